"""Turn the errors a user can fix into one clear line on stderr and a non-zero exit code."""
from __future__ import annotations

import contextlib
import sys


def known_errors() -> tuple[type[BaseException], ...]:
    from pipeline.config import ConfigError
    from pipeline.data.base import DataError
    from pipeline.objectives import NonFiniteLossError
    from pipeline.tracking.run import TrackingUnavailable

    return ConfigError, DataError, TrackingUnavailable, NonFiniteLossError


@contextlib.contextmanager
def report_errors():
    try:
        yield
    except KeyboardInterrupt:
        print("Interrupted: the run was marked KILLED; resume with ckpt_path=<output dir>/checkpoints/last.ckpt",
              file=sys.stderr, flush=True)
        sys.exit(130)
    except known_errors() as error:
        print(f"Error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
