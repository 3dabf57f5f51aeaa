# hostmemd container image: Node 20 on Debian 12 (bookworm), built in two stages so the
# runtime image has no compiler, dev dependencies or sources. Run (see docs/deployment.md):
#   docker build -t hostmemd .
#   sudo install -d -m 0750 -o 10001 -g 10001 /run/hostmemd   # writable by the image's user
#   docker run -d --name hostmemd --device /dev/kvm --group-add "$(stat -c %g /dev/kvm)" \
#     -v hostmemd-state:/var/lib/hostmemd -v /run/hostmemd:/run/hostmemd hostmemd
# then talk QMP on /run/hostmemd/qmp.sock on the host.

FROM node:20-bookworm-slim AS build
WORKDIR /opt/hostmemd
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY qapi ./qapi
COPY src ./src
COPY web ./web
COPY tools ./tools
# Compiles src/ to dist/, precomputes the schema model (dist/qapi-model.json, valid for this
# path: keep WORKDIR the same in both stages), bundles the web console (web/dist/) and the
# daemon (tools/bundle.mjs: dist/daemon/main.bundle.js, its V8 code cache made by this stage's
# node, the same as the runtime's, and koffi required as ../../node_modules/koffi, where the
# runtime stage's npm ci puts it).
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    MALLOC_ARENA_MAX=2
WORKDIR /opt/hostmemd
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY qapi ./qapi
COPY --from=build /opt/hostmemd/dist ./dist
COPY --from=build /opt/hostmemd/web/dist ./web/dist
# A non-root user with a fixed uid/gid (10001), so that the host can prepare what it shares:
# the bind-mounted /run/hostmemd must be writable by it (Docker would create a missing host
# directory as root's), and the QMP socket in it belongs to 10001:10001 (mode 0660).
# /dev/kvm's group differs from host to host, so it is added at run time with --group-add.
RUN groupadd --system --gid 10001 hostmemd \
 && useradd --system --uid 10001 --gid hostmemd --home-dir /var/lib/hostmemd --no-create-home --shell /usr/sbin/nologin hostmemd \
 && mkdir -p /var/lib/hostmemd /run/hostmemd \
 && chown hostmemd:hostmemd /var/lib/hostmemd /run/hostmemd \
 && chmod 0700 /var/lib/hostmemd
USER hostmemd
# The state journal (objects survive a container restart; their memory does only with a
# handover, see docs/deployment.md) and the QMP socket directory, shared with the host.
VOLUME ["/var/lib/hostmemd", "/run/hostmemd"]
# Only with --ws (the console binds 127.0.0.1 unless --ws-allow-remote is given).
EXPOSE 4780
# The supervisor restarts a crashed daemon with its backend fds (memory kept while the
# container runs); it takes hostmemd's options.
ENTRYPOINT ["node", "/opt/hostmemd/bin/hostmemd-supervise"]
CMD ["--state-dir", "/var/lib/hostmemd", "--qmp", "unix:/run/hostmemd/qmp.sock"]
