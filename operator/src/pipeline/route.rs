//! What makes a route: the objects that deliver a pipeline's events to one sink, and the
//! three things done with them (apply, delete, watch). The four kinds of a route are listed
//! here and nowhere else.

use crate::children;
use crate::context::Context;
use crate::error::Error;
use crate::route_users::{self, RouteUser, USER_ANNOTATION};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use sluice_core::route::RouteConfig;
use sluice_crd::Pipeline;

/// One route of a pipeline (built by `desired::routes`).
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The sink's name.
    pub sink: String,
    /// The route's identity for its broker keys (`route_users::route_id`).
    pub route_id: String,
    /// The name of the route's objects.
    pub name: String,
    /// The route's broker user, with tenant accounts.
    pub user: Option<RouteUser>,
    /// The Secret of the user's creds, which the pods mount (with tenant accounts).
    pub secret: Option<Secret>,
    /// The rendered worker configuration.
    pub config: RouteConfig,
    /// The worker configuration, mounted by the pods.
    pub config_map: ConfigMap,
    /// The `sluice-worker` pods.
    pub deployment: Deployment,
    /// The pods' metrics endpoint.
    pub service: Service,
    /// At most one worker down at a time in voluntary disruptions.
    pub pod_disruption_budget: PodDisruptionBudget,
}

/// Applies the objects of `route`, the configuration and the credentials first (the pods
/// mount them). The operator cannot read Secrets: the credentials Secret is written when the
/// live Deployment's pods do not name the route's current user, that is when the Deployment is
/// new or the credentials rotate.
pub async fn apply(ctx: &Context, route: &Route) -> Result<(), Error> {
    if let (Some(secret), Some(user)) = (&route.secret, &route.user) {
        let live = kube::Api::<Deployment>::namespaced(
            ctx.client.clone(),
            route
                .deployment
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default(),
        )
        .get_opt(&route.name)
        .await?;
        let live_user = live
            .as_ref()
            .and_then(|d| d.spec.template.metadata.as_ref()?.annotations.as_ref())
            .and_then(|a| a.get(USER_ANNOTATION));
        if live_user != Some(&user.public_key) {
            children::write(ctx, secret).await?;
        }
    }
    children::apply(ctx, &route.config_map).await?;
    children::apply(ctx, &route.deployment).await?;
    children::apply(ctx, &route.service).await?;
    children::apply(ctx, &route.pod_disruption_budget).await?;
    Ok(())
}

/// Deletes the objects of the route called `name` in `namespace` (those that exist).
pub async fn delete(ctx: &Context, namespace: &str, name: &str) -> Result<(), Error> {
    children::delete::<Deployment>(ctx, namespace, name).await?;
    children::delete::<ConfigMap>(ctx, namespace, name).await?;
    children::delete::<Service>(ctx, namespace, name).await?;
    children::delete::<PodDisruptionBudget>(ctx, namespace, name).await?;
    if ctx.accounts.is_some() {
        children::delete::<Secret>(ctx, namespace, &route_users::secret_name(name)).await?;
    }
    Ok(())
}

/// The pipeline controller, also watching the objects of every route (those matching
/// `owned`): a route object edited or deleted by hand is restored.
pub fn watch(
    controller: Controller<Pipeline>,
    client: &Client,
    owned: &watcher::Config,
) -> Controller<Pipeline> {
    controller
        .owns(Api::<Deployment>::all(client.clone()), owned.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client.clone()), owned.clone())
        .owns(
            Api::<PodDisruptionBudget>::all(client.clone()),
            owned.clone(),
        )
}
