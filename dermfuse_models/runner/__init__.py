"""The experiment runner: the only room that imports dermfuse_data, dermfuse_models and dermfuse_xai.

Command line: ``python -m dermfuse_models.runner <command>`` (see :mod:`dermfuse_models.runner.__main__`).
Run folders (:mod:`~dermfuse_models.runner.runs`), rebuilding a trained run
(:mod:`~dermfuse_models.runner.rebuild`), the LightningCLI (:mod:`~dermfuse_models.runner.cli`), the
two-stage pipeline, sweeps, the report, profiling, the explain command, callbacks and figures live here.
"""
