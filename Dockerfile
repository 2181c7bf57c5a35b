# Build stage: compile the shipped code (server/ and client/, tsconfig.build.json) with the
# dev dependencies, then drop them.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# npm has been seen to exit 0 after a failed install (it printed "Exit handler never
# called!"). `npm ls` fails on a missing or broken dependency, so such a build stops here
# instead of shipping an image that cannot start.
RUN npm ci --no-audit --no-fund && npm ls >/dev/null
COPY tsconfig.json tsconfig.build.json ./
COPY server ./server
COPY client ./client
# `npm run` finds the local TypeScript only (never `npx tsc`, which without it fetches an
# unrelated package named tsc). The embedded PostgreSQL (an optional dependency, needed
# here only for its types) is pruned with the dev dependencies: in a container
# DATABASE_URL always names a real database.
RUN npm run build:dist \
 && npm prune --omit=dev --omit=optional --no-audit --no-fund \
 && npm ls --omit=dev --omit=optional >/dev/null

# Runtime stage: production dependencies, the compiled server and client, and the schema,
# run as a non-root user. One image serves the server and the stress client.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production PORT=12345 METRICS_PORT=9464
COPY package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/server ./dist/server
COPY --from=build /app/dist/client ./dist/client
COPY schema ./schema
COPY scripts/docker-entrypoint.sh ./scripts/docker-entrypoint.sh
# Every module the server and the clients import is loaded here, so a missing one fails
# the build rather than the first start.
RUN node dist/server/main.js --help >/dev/null \
 && node dist/client/send.js --help >/dev/null \
 && node dist/client/stress.js --help >/dev/null
USER node
EXPOSE 12345 9464
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
  CMD node -e "fetch('http://127.0.0.1:'+process.env.METRICS_PORT+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
