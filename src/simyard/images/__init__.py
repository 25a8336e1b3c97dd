"""Model environments: OCI images that carry a model version's runtime.

Registration (:mod:`~simyard.images.resolve`) copies an image with ``skopeo`` into an OCI
layout, checks every layer (:mod:`~simyard.images.verify`) and stores its blobs by digest
(:mod:`~simyard.images.store`). Workers fetch them by digest, verify them, unpack them once
with ``umoci`` (:mod:`~simyard.images.unpack`) into a cache (:mod:`~simyard.images.cache`),
and the sandbox runs the task with the image's root filesystem as ``/``.
"""
