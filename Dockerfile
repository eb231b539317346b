# One image for both roles: `docker run IMAGE api` or `docker run IMAGE worker`.
# The Node line is the one in .node-version, the runtime CI runs every suite on (a test keeps them equal).
FROM node:24.22.3-bookworm-slim AS build
WORKDIR /app
# For an npm older than 11.16, which ignores package.json's allowScripts: onnxruntime-node's documented switch
# (its postinstall would download CUDA providers; the CPU runtime ships in the package) and @scarf/scarf's
# opt-out of its install-time analytics ping.
ENV ONNXRUNTIME_NODE_INSTALL=skip SCARF_ANALYTICS=false
# g++ and Debian's static libfaiss for the face index's FAISS binding (scripts/build-native.mjs).
RUN apt-get update && apt-get install -y --no-install-recommends g++ libfaiss-dev && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json .node-version ./
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund
COPY native ./native
# Only what the image runs: apps/ and libs/ (tsconfig.build.json leaves out specs, test/ and bench/).
COPY tsconfig.json tsconfig.build.json ./
COPY apps ./apps
COPY libs ./libs
RUN npm run build -- --apps-only && npm prune --omit=dev

FROM node:24.22.3-bookworm-slim
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 MODELS_DIR=/app/models STORAGE_DIR=/data/images
# V8's young generation capped at 2 MB per semi-space (its own cap scales to 64 MB on a large heap): the API's
# peak RSS with 1,000 requests in flight fell by about 110 MB, at no CPU cost in npm run bench. Override freely.
ENV NODE_OPTIONS=--max-semi-space-size=2
WORKDIR /app
# jemalloc instead of glibc's malloc (sharp's own advice for long-running processes on glibc), with a background
# thread that hands freed pages back to the kernel after 1 s: npm run bench -- memory measured the worker 12 % and
# the API's resident memory after a burst 30 % lower, and a worker that decoded 49-megapixel 16-bit PNGs back at its
# starting RSS within 5 s instead of keeping 150-240 MB (README "Memory allocator"). LD_PRELOAD= turns it off.
# libblas3, liblapack3 and libgomp1: what the FAISS binding links dynamically (libfaiss itself is linked in).
RUN apt-get update && apt-get install -y --no-install-recommends tini libjemalloc2 libblas3 liblapack3 libgomp1 && rm -rf /var/lib/apt/lists/* \
  && ln -s "$(ls /usr/lib/*-linux-gnu/libjemalloc.so.2)" /usr/local/lib/libjemalloc.so.2 \
  && mkdir -p /data/images && chown node:node /data/images
ENV LD_PRELOAD=/usr/local/lib/libjemalloc.so.2 MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/native/faiss-face-index/build ./native/faiss-face-index/build
COPY package.json ./
COPY models ./models
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh
USER node
EXPOSE 3000 3001
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/entrypoint.sh"]
CMD ["api"]
