# guardbot image: wheels are built in the first stage; the final stage has no compiler.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
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
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links /wheels /wheels/*.whl \
    && rm -rf /wheels
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["guardbot", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["guardbot"]
CMD ["run"]
