"""Where MEPO keeps files it can rebuild (caches), and where the shipped assets live."""
from __future__ import annotations

import os
from pathlib import Path

#: Root of the repository's shipped assets (read-only at runtime).
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


def cache_dir() -> Path:
    """The project cache directory: ``$MEPO_CACHE_DIR`` if set, else ``~/.cache/mepo``.

    Not created here; callers create the sub-folder they write to.
    """
    env = os.environ.get("MEPO_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mepo"
