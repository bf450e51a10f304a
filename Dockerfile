# guardbot image: wheels are built in the first stage; the final stage has no compiler and no
# wheels layer (they are installed from a bind mount of the build stage). No pyarrow: feather
# files are the optional extra guardbot[feather]; the live bot and the bundled CSV replay need
# none of it.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml requirements.lock README.md LICENSE ./
COPY bot ./bot
COPY guards ./guards
COPY paper ./paper
COPY config ./config
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels -c requirements.lock .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GUARDBOT_STATE__DIR=/data/state \
    GUARDBOT_LOGGING__FORMAT=json
RUN groupadd --system --gid 10001 guardbot \
    && useradd --system --uid 10001 --gid guardbot --home-dir /data --shell /usr/sbin/nologin guardbot \
    && mkdir -p /data/state \
    && chown -R guardbot:guardbot /data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["guardbot", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["guardbot"]
CMD ["run"]
