//! The deployment artefacts (Dockerfile, docker-compose.yml,
//! deploy/kubernetes, dashboards and alerts) checked as the tools that use
//! them would, and the topologies they describe started as processes of the
//! built binary. One test binary, so the workspace links once.

mod compose;
mod dockerfile;
mod files;
mod kubernetes;
mod kubernetes_spools;
mod kustomize;
mod network_policy;
mod process;
mod service_config;

mod compose_wiring;
mod image;
mod kubernetes_wiring;
mod observability;
mod topology;
