import pytest

from mepo_core.body.model import load_body_model
from mepo_core.body.standin import write_standin_smplx


@pytest.fixture(scope="session")
def standin_model_dir(tmp_path_factory):
    """A directory holding a random, well-formed stand-in SMPLX_NEUTRAL.npz (never a real SMPL-X file)."""
    directory = tmp_path_factory.mktemp("standin_smplx")
    write_standin_smplx(directory)
    return directory


@pytest.fixture(scope="session")
def open_model():
    """The shipped open (Anny-derived) body model, loaded once per session."""
    return load_body_model()
