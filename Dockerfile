# syntax=docker/dockerfile:1
# The dynamo-kv image: one image for the data-plane node and for the operator, which differ only in
# the command (both are the same npm package and share dist/ and node_modules):
#   node dist/node/src/cli/main.js node    a KV node (the default command; `dynamo` is on PATH too)
#   node dist/operator/src/main.js         the DynamoCluster operator (what the Helm chart runs)
# One image means one build, one tag to pin, and a node version that always matches its operator.
#
#   docker build -t dynamo-kv:0.1.0 .
#
# It runs as uid/gid 65532 (non-root) and writes nothing outside /var/lib/dynamo (a volume: the node's
# LevelDB, DYNAMO_DATA_DIR), so it works with readOnlyRootFilesystem. No install scripts run: like
# package.json's allowScripts, classic-level, msgpackr-extract and esbuild use their prebuilt binaries
# (classic-level ships prebuilds/linux-x64/classic-level.node for glibc, which bookworm is).

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency install scripts (and no `prepare` build before the sources are here).
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY node ./node
COPY operator ./operator
COPY bench ./bench
COPY examples ./examples
# Loading classic-level at the end fails the build, not the pod, when its prebuilt LevelDB binding does
# not load on this platform.
RUN npm run build \
  && npm prune --omit=dev --ignore-scripts \
  && chmod 0755 dist/node/src/cli/main.js \
  && node -e "require('classic-level')" \
  && mkdir -p /out/var/lib/dynamo

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
  DYNAMO_DATA_DIR=/var/lib/dynamo \
  NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/node ./dist/node
COPY --from=build /app/dist/operator ./dist/operator
COPY --from=build --chown=65532:65532 /out/var/lib/dynamo /var/lib/dynamo
RUN ln -s /app/dist/node/src/cli/main.js /usr/local/bin/dynamo
USER 65532:65532
VOLUME ["/var/lib/dynamo"]
# Client and admin HTTP API (also /metrics, /health, /ready), and the node-to-node transport.
EXPOSE 8080 7070
# No shell wrapper as PID 1: node itself gets SIGTERM and the node and operator shut down cleanly.
ENTRYPOINT []
CMD ["node", "dist/node/src/cli/main.js", "node"]
