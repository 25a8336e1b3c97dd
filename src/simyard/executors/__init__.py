"""Where task runs execute: this machine's processes (local) or a Dask cluster (dask)."""
