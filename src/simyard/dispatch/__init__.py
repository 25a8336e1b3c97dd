"""The dispatcher: desired state in the database vs. what the executor reports.

- ``policy.py``   the decisions: named rules over a plain snapshot (pure, no I/O)
- ``snapshot.py`` reads the snapshot (one short transaction)
- ``apply.py``    applies the decided actions (one short, fenced transaction)
- ``metrics.py``  a finishing run's metrics, read from storage outside transactions
- ``lease.py``    this server's term of the dispatch lease, the fencing token
- ``livelogs.py`` the live log files followers read
- ``changes.py``  wakes this process's followers when something was recorded
- ``dispatcher.py`` the loop tying them together, and the executor calls
"""

from simyard.dispatch.dispatcher import Dispatcher
from simyard.dispatch.livelogs import LiveLogs
from simyard.dispatch.policy import MAX_ATTEMPTS, plan

__all__ = ["MAX_ATTEMPTS", "Dispatcher", "LiveLogs", "plan"]
