"""The Hydra side of the sweep: reads ``hydra.sweeper.*``, then hands over to ``pipeline.sweep``."""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import PipelineOptunaSweeperConf  # noqa: F401  (registers the config node)


class PipelineOptunaSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        self.options = options
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # the task function is not called: each trial runs pipeline.train.train in its worker and the
        # sweeper reads the validation metrics, which the task function does not return
        self.hydra_context = hydra_context
        self.config = config

    def sweep(self, arguments: List[str]) -> Dict[str, Any]:
        from pipeline.sweep.runner import run_sweep
        from pipeline.sweep.study import SweepError

        assert self.config is not None and self.hydra_context is not None
        from pipeline.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, TrackingUnavailable, sigterm_as_interrupt

        try:
            with sigterm_as_interrupt():
                return run_sweep(dict(self.options), list(arguments), self.hydra_context, self.config)
        except SweepError as error:  # a problem the user can fix: one line, not a traceback
            print(f"Error: {error}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)
        except TrackingUnavailable as error:  # the store cannot be reached: as a single run says it
            from pipeline.tracking.redact import redact_text

            print(f"Error: {redact_text(' '.join(str(error).split()))}", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)
        except Exception as error:  # the study's storage cannot be reached (SQLAlchemy's OperationalError, ...)
            if type(error).__module__.split(".")[0] != "sqlalchemy" or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            from pipeline.tracking.redact import redact_text

            print(f"Error: hydra.sweeper.storage: cannot open the study's storage ({type(error).__name__}: "
                  f"{redact_text(' '.join(str(error).split()))[:300]})", file=sys.stderr, flush=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt as interrupt:
            stage = getattr(interrupt, "sweep_stage", None)  # after the trials: none of them was running
            if stage:
                done = {"final training": "the best trial's final training (every trial had ended and is kept in the "
                                          "study): rerun the same command to finish it",
                        "after the trials": "the sweep's end, after every trial had ended (they are kept in the study) "
                                            "and before the best trial's final training: rerun the same command to "
                                            "train it"}.get(stage, "the sweep's report, after its trials and the best "
                                                                   "trial's final training had ended: rerun the same "
                                                                   "command to write it")
                print(f"Interrupted (Ctrl-C or SIGTERM) in {done}", file=sys.stderr, flush=True)
                sys.exit(EXIT_INTERRUPTED)
            print("Interrupted (Ctrl-C or SIGTERM): the sweep stopped; finished trials are kept in the study and those "
                  "that were training are queued again: rerun the same command to continue", file=sys.stderr, flush=True)
            sys.exit(EXIT_INTERRUPTED)
