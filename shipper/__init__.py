"""shipper: a security log shipper for Docker hosts and the ELK stack."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shipper")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
