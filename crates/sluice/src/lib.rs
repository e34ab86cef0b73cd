//! The `sluice` command line. Its one command so far, [`dev`], runs the whole platform on one
//! machine: kubesim as the Kubernetes API, the operator, the Web API, NATS, and a local runner
//! that plays the kubelet for the route Deployments by running `sluice-worker` processes.

pub mod dev;
