import pytest

from .shipper_proc import ShipperProcess


@pytest.fixture
def shippers(tmp_path):
    """Make `shipper run` processes; each is killed at the end if still running."""
    made: list[ShipperProcess] = []

    def make(*settings: str, subdir: str = "", env: dict | None = None) -> ShipperProcess:
        path = tmp_path / subdir if subdir else tmp_path
        path.mkdir(exist_ok=True)
        shipper = ShipperProcess(path, *settings, env=env)
        made.append(shipper)
        return shipper

    yield make
    for shipper in made:
        shipper.close()
