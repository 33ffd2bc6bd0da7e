# Viking on a Nomad cluster: one agent per client node, in a privileged Docker container.
#
# Client prerequisites (Nomad client config, docker plugin block):
#   allow_privileged = true        # for `privileged` below
#   volumes { enabled = true }     # for the bind mounts below
# The image is deploy/docker/Dockerfile, built after `cargo xtask build` and pushed to a
# registry the clients can pull from; set `image` accordingly.
#
# Stopping or updating this job never detaches Viking: the agent leaves its programs and
# maps pinned on SIGTERM, so VIP connects keep working between the old agent's exit and
# the new agent's start (which adopts the pins). To remove Viking from a node, stop the
# job and run `viking-agent uninstall` on that node.

job "viking" {
  type        = "system"
  datacenters = ["*"]
  # Placed before ordinary workloads, and may preempt them on a full node: without the
  # agent a node's VIPs are not kept up to date.
  priority = 90

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  # One node at a time. A node whose new agent does not become ready (its /readyz check,
  # below: programs attached and every source applied once) fails the deployment, and the
  # job goes back to the last version that did. (Nomad versions without
  # deployments for system jobs enforce only max_parallel and stagger.)
  update {
    max_parallel     = 1
    stagger          = "10s"
    health_check     = "checks"
    min_healthy_time = "10s"
    healthy_deadline = "2m"
    auto_revert      = true
  }

  group "agent" {
    # Keep retrying on the node: while the agent is down the pinned dataplane still
    # serves, but it no longer follows changes.
    restart {
      attempts = 10
      interval = "30m"
      delay    = "5s"
      mode     = "delay"
    }

    # The agent's metrics endpoint ([metrics] in the config below), on the host network.
    network {
      port "metrics" {
        static = 9465
      }
    }

    # Registered in the node's Consul: Prometheus finds the agents through Consul's service
    # discovery (`consul_sd_configs`, service "viking-agent"), Nomad checks readiness.
    service {
      name     = "viking-agent"
      port     = "metrics"
      provider = "consul"
      tags     = ["metrics"]
      check {
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "viking-agent" {
      driver = "docker"

      # The agent treats SIGTERM as "stop and leave the dataplane in place". If it ever
      # takes longer than kill_timeout, SIGKILL is just as safe: the pins stay either way.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      config {
        image = "viking-agent:0.1.0"

        # Loading and attaching BPF programs needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN;
        # attaching to cgroups, BPF_LINK_UPDATE on pinned links, mounting bpffs and entering
        # other network namespaces (to destroy UDP sockets of removed backends) need
        # CAP_SYS_ADMIN; opening /proc/<pid>/ns/net of other processes needs
        # CAP_SYS_PTRACE. cap_add is not enough: Docker's default AppArmor profile denies
        # mount() even with CAP_SYS_ADMIN; privileged grants the capabilities and lifts it.
        privileged = true

        # The host's network: 127.0.0.1 is the node's Consul agent (CONSUL_HTTP_ADDR
        # below), and the DNS responder, when enabled, listens on the host's addresses.
        network_mode = "host"

        # The host's PIDs: the Docker source maps each container to its cgroup id through
        # /proc/<pid>/cgroup, and socket destruction enters /proc/<pid>/ns/net of the
        # containers' processes. In a private PID namespace neither is visible.
        pid_mode = "host"

        # Docker gives containers a private cgroup namespace on cgroup v2 hosts, in which
        # /proc/<pid>/cgroup shows other containers' cgroups as "/../.." paths that
        # cannot be resolved. Entering the host's cgroup namespace (PID 1 is the host's
        # init, thanks to pid_mode) makes those paths absolute again.
        entrypoint = ["nsenter", "--cgroup=/proc/1/ns/cgroup", "--", "/usr/local/bin/viking-agent"]
        args       = ["run", "--config", "/local/viking.toml"]

        # bpffs: programs and maps are pinned under /sys/fs/bpf/viking. It must be the
        # host's bpffs, or the pins (and with them the attached programs) would vanish
        # with the container. rshared: if the host has no bpffs mounted yet, the mount
        # the agent makes appears on the host too, and outlives the container.
        mount {
          type     = "bind"
          source   = "/sys/fs/bpf"
          target   = "/sys/fs/bpf"
          readonly = false
          bind_options {
            propagation = "rshared"
          }
        }

        # The host's cgroup v2 hierarchy (replacing the container's own view): the
        # programs attach to its root, so they see every container's connects, and
        # container cgroup ids are looked up in it.
        mount {
          type     = "bind"
          source   = "/sys/fs/cgroup"
          target   = "/sys/fs/cgroup"
          readonly = false
        }

        # dockerd's API, for the [docker] source (container identities and policies).
        mount {
          type     = "bind"
          source   = "/var/run/docker.sock"
          target   = "/var/run/docker.sock"
          readonly = false
        }
      }

      env {
        # The node's Consul agent; the [consul] section leaves `address` unset so the
        # agent reads this, as the consul CLI does.
        CONSUL_HTTP_ADDR = "127.0.0.1:8500"
        # hickory-server (the DNS responder) logs every query at info.
        RUST_LOG = "info,hickory_server=warn"
      }

      # The Consul ACL token, from the Nomad variable nomad/jobs/viking (key consul_token;
      # create it first, empty on clusters without ACLs), into the environment as
      # CONSUL_HTTP_TOKEN: it never lands in the config file.
      template {
        destination = "secrets/consul.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/viking" }}CONSUL_HTTP_TOKEN={{ .consul_token }}{{ end }}
        EOT
      }

      # The agent's config. The agent watches this file and applies edits as a diff, so a
      # re-render needs no restart.
      template {
        destination = "local/viking.toml"
        change_mode = "noop"
        data        = <<-EOT
          [agent]
          vip_ranges = ["240.0.0.0/4"]

          # Services registered in Consul get VIPs allocated in Consul's KV store. Address
          # and token: CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN from the environment.
          [consul]
          kv_prefix = "viking"

          # Containers: identity (cgroup id) and declared dependencies.
          [docker]
          policy = "off"

          # Names: <service>.service.viking. Loopback for the host's resolver (forward the
          # domain to 127.0.0.1:8600); add the Docker bridge's gateway, e.g. "172.17.0.1:53",
          # to serve containers started with --dns 172.17.0.1.
          [dns]
          listen = ["127.0.0.1:8600"]

          # /metrics, /healthz, /readyz on the node's addresses, for Prometheus and the
          # check above (the service's port).
          [metrics]
          listen = "0.0.0.0:9465"
        EOT
      }

      resources {
        cpu = 200
        # Kernel map memory is charged to the task's cgroup (kernel 5.11 and later); with
        # the default [limits] the maps hold a few hundred MB. Check the memlock column
        # of `bpftool map show` and size this accordingly.
        memory = 1024
      }
    }
  }
}
