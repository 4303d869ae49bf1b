"""Models on the Hugging Face hub: listed, planned from their headers, downloaded into the HF cache.

* :mod:`.config`: where the hub is and how long to wait (``HF_ENDPOINT``, ``HF_TOKEN``,
  ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``/``HF_HOME``, ``HF_HUB_ETAG_TIMEOUT``, ``HF_HUB_DOWNLOAD_TIMEOUT``),
  read when used, as ``huggingface_hub`` users expect.
* :mod:`.listing`: a repository's GGUF files with exact sizes and SHA-256 in one API call, file names
  mapped to quants, split parts grouped into one model; searching the hub.
* :mod:`.remote`: a remote GGUF's header read with HTTP range requests by Rigfit's own reader
  (:func:`app.core.gguf_reader.read_gguf_source`), cached on disk (:mod:`.header_cache`), turned into
  the same :class:`~app.core.model_spec.ModelSpec` a local file gives; ``hf:`` references.
* :mod:`.download`: downloads into the standard Hugging Face cache with progress, cancel, resume, a
  free-disk check and the SHA-256 checked against the hub's LFS hash.

No Qt here, and nothing above ``app.core`` is imported: the CLI and the window use this package.
Every failure is a :class:`~app.core.errors.RigfitError` (:mod:`.errors`) worded for the user.
"""
