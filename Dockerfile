# One image for every process of agentstack-operator: `agentstack operator`,
# `agentstack runner` (also the Job executor's `agentstack runner --once`) and
# `agentstack api`. No ENTRYPOINT: the Helm chart (charts/agentstack-operator) and the
# operator's tick Jobs set the command; run without one, it prints the CLI's help.
#
#   docker build -t agentstack-operator:0.1.0 .
#
# BASE_IMAGE is any Debian-like image with Python 3.11+ and its venv module: the usual
# slim Python image by default; `agentstack dev image` builds on a minimal Debian of its
# own (no registry is needed). The build stage and the final image share it.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The dependencies first, at the versions the test suite last passed with
# (constraints.txt), in a layer of their own: a change to the code alone reuses it.
COPY pyproject.toml constraints.txt ./
RUN python3 -m venv /opt/agentstack \
 && python3 -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/agentstack/bin/pip install --constraint constraints.txt --requirement /tmp/requirements.txt
# Then the project itself.
COPY README.md ./
COPY core/ core/
COPY operator/ operator/
COPY runner/ runner/
COPY api/ api/
COPY cli/ cli/
RUN /opt/agentstack/bin/pip install --no-deps --constraint constraints.txt . \
 && /opt/agentstack/bin/agentstack --version

FROM ${BASE_IMAGE}
ENV PATH=/opt/agentstack/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric, non-root user: Kubernetes can only verify `runAsNonRoot` (which the chart
# and the Job executor's pods set) for an image whose USER is numeric.
RUN groupadd --system --gid 10001 agentstack \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin agentstack
COPY --from=build /opt/agentstack /opt/agentstack
USER 10001:10001
WORKDIR /tmp
# operator metrics/health, runner metrics/health, read API
EXPOSE 9101 9102 8080
CMD ["agentstack", "--help"]
