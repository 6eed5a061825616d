"""What both adapters (lda_cls, projects/LDA's lda_det and tools) share that is neither loss math nor analysis.

The project's conventions for files and command lines, one module each:

* ``cli``: every command ends in one ``error: ...`` line for a user's mistake (``run_cli``);
* ``checkpoint_io``: torch files read with ``weights_only=True`` (``load_checkpoint``);
* ``atomic_files``: files written whole or not at all (``atomic_save``, ``atomic_write_text``,
  ``atomic_write_json``);
* ``strict_json``: JSON with NaN as null (``strict_json_dumps``);
* ``problems``: a data check's findings, a total and the first examples per kind (``Problems``);
* ``config_keys``: a config as dotted keys (``flatten_config``).

lda_core stays the loss alone (tensors in, tensors out); lda_analysis holds the figures and metrics.
"""
