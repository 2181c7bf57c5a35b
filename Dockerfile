# Build stage: compile TypeScript with dev dependencies.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY server ./server
COPY client ./client
COPY scripts ./scripts
COPY tests ./tests
RUN npx tsc -p tsconfig.json

# Runtime stage: production dependencies and compiled code only, as a non-root
# user. The embedded PostgreSQL (an optional dependency) is left out: in a
# container DATABASE_URL always names a real database.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production PORT=12345 METRICS_PORT=9464
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY schema ./schema
COPY scripts/docker-entrypoint.sh ./scripts/docker-entrypoint.sh
USER node
EXPOSE 12345 9464
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=5 \
  CMD node -e "fetch('http://127.0.0.1:'+process.env.METRICS_PORT+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
