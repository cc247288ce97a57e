# The shipper's image. The base is a build argument so that machines without a registry
# can build from a local Debian/Python base (see scripts/testbed.sh); it must provide
# python3 (>= 3.11) with venv. Builds that must not reach PyPI put wheels in wheelhouse/
# and pass PIP_OPTIONS="--no-index --find-links /src/wheelhouse".
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_OPTIONS=""
WORKDIR /src
COPY . .
# PIP_OPTIONS is meant to split into several options
# hadolint ignore=SC2086
RUN python3 -m venv /opt/shipper \
    && /opt/shipper/bin/pip install --no-cache-dir $PIP_OPTIONS .

FROM ${BASE_IMAGE}
COPY --from=build /opt/shipper /opt/shipper
ENV PATH=/opt/shipper/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SHIPPER_STATE__DIRECTORY=/var/lib/shipper
# Reading other containers' /proc, their json-file logs and the Docker socket needs root
# on the host's terms; the compose file mounts all of it read-only.
RUN mkdir -p /var/lib/shipper
VOLUME ["/var/lib/shipper"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s CMD ["python3", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/healthz').status != 200)"]
ENTRYPOINT ["shipper"]
CMD ["run", "--log-format", "json"]
