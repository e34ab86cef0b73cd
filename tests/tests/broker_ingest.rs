//! Ingest into tenant accounts, end to end, against a real nats-server in operator mode: the
//! operator (in-process, with the broker's operator key) gives each Tenant its own account;
//! `sluice-api serve` (a process, with only the ingest key) publishes each tenant's events into
//! that tenant's account; when a tenant's storage quota is used up the broker refuses its
//! events and the API answers 507 with problem+json, while the other tenant's ingest goes on.

use serde_json::{Value, json};
use sluice_operator::accounts::{Accounts, BrokerAuth};
use sluice_operator::config::OperatorConfig;
use sluice_testkit::nats::OperatorModeNats;
use sluice_tests::SimCluster;
use sluice_tests::stack::{
    ApiClient, ApiProcess, Database, Operator, api_kubeconfig, binary, eventually,
};
use std::time::Duration;

fn ndjson(n: usize, size: usize) -> String {
    (0..n)
        .map(|i| json!({"id": i, "pad": "x".repeat(size)}).to_string() + "\n")
        .collect()
}

#[test]
fn each_tenants_events_go_into_its_own_account_and_its_storage_quota_is_the_brokers() {
    let nats = OperatorModeNats::start();
    let sim = SimCluster::start();
    let api_bin = binary("sluice-api", "sluice-api");
    let suffix = format!("{:08x}", std::process::id());
    let db = Database::create(&format!("sluice_broker_{suffix}"));
    let dir = tempfile::tempdir().unwrap();
    let ingest_seed = dir.path().join("ingest.seed");
    std::fs::write(&ingest_seed, nats.bootstrap.ingest_seed()).unwrap();
    let auth = BrokerAuth::new(
        nats.bootstrap.operator_seed(),
        nats.bootstrap.admin_creds.clone(),
        Some(nats.bootstrap.ingest.public_key()),
    );

    sim.block_on(async {
        let operator = Operator::start(
            &sim,
            OperatorConfig {
                nats_url: nats.url.clone(),
                broker_auth: Some(auth.clone()),
                ..Default::default()
            },
        );
        let seed_arg = ingest_seed.to_string_lossy().into_owned();
        let api_process = ApiProcess::start(
            &api_bin,
            &db.url,
            &api_kubeconfig(&sim),
            &nats.url,
            &[("SLUICE_NATS_INGEST_SEED_FILE", &seed_arg)],
        )
        .await;
        let admin = api_process.admin_token.clone();
        let api = ApiClient::new(&api_process.base);

        // Two tenants: acme with 64 KiB of stream storage, bravo without a storage limit.
        let mut producers = vec![];
        for (tenant, quota) in [
            ("acme", json!({"maxStreams": 2, "storage": "64Ki"})),
            ("bravo", json!({"maxStreams": 2})),
        ] {
            let (s, b) = api
                .call(
                    reqwest::Method::POST,
                    "/v1/tenants",
                    &admin,
                    Some(json!({"name": tenant, "spec": {"quota": quota}})),
                )
                .await;
            assert_eq!(s, 201, "{b}");
            let mut tokens = vec![];
            for role in ["developer", "producer"] {
                let (s, b) = api
                    .call(
                        reqwest::Method::POST,
                        &format!("/v1/tenants/{tenant}/tokens"),
                        &admin,
                        Some(json!({"name": role, "role": role})),
                    )
                    .await;
                assert_eq!(s, 201, "{b}");
                tokens.push(b["token"].as_str().unwrap().to_string());
            }
            let (dev, producer) = (tokens[0].clone(), tokens[1].clone());
            eventually("the tenant's namespace", || async {
                let (s, b) = api
                    .call(
                        reqwest::Method::POST,
                        &format!("/v1/tenants/{tenant}/streams"),
                        &dev,
                        Some(json!({"name": "orders", "spec": {}})),
                    )
                    .await;
                assert!(s == 201 || s == 409, "{s} {b}");
                s == 201
            })
            .await;
            eventually("the stream provisioned in the tenant's account", || async {
                let (_, b) = api
                    .call(
                        reqwest::Method::GET,
                        &format!("/v1/tenants/{tenant}/streams/orders"),
                        &dev,
                        None,
                    )
                    .await;
                b["status"]["subject"].is_string()
            })
            .await;
            producers.push(producer);
        }
        let (acme, bravo) = (producers[0].clone(), producers[1].clone());

        // Each tenant's events land in its own account's stream.
        let (s, b, _) = api.ingest("acme", "orders", &acme, ndjson(5, 10)).await;
        assert_eq!(s, 202, "{b}");
        let (s, b, _) = api.ingest("bravo", "orders", &bravo, ndjson(3, 10)).await;
        assert_eq!(s, 202, "{b}");
        let accounts = Accounts::new(&nats.url, &auth, None).unwrap();
        let tenant_uid = |name: &'static str| {
            let sim = &sim;
            async move {
                kube::Api::<sluice_crd::Tenant>::all(
                    kube::Client::try_from(kube::Config::new(sim.url().parse().unwrap())).unwrap(),
                )
                .get(name)
                .await
                .unwrap()
            }
        };
        let acme_tenant = tenant_uid("acme").await;
        assert!(
            acme_tenant
                .status
                .as_ref()
                .and_then(|s| s.broker_account.as_deref())
                .is_some_and(|a| a.starts_with('A')),
            "the Tenant's status names its account"
        );
        let messages = |uid: String, stream: &'static str| {
            let accounts = &accounts;
            async move {
                let client = accounts.client(&uid).await.unwrap();
                async_nats::jetstream::new(client)
                    .get_stream(stream)
                    .await
                    .map(|s| s.cached_info().state.messages)
                    .ok()
            }
        };
        let acme_uid = acme_tenant.metadata.uid.clone().unwrap();
        let bravo_uid = tenant_uid("bravo").await.metadata.uid.unwrap();
        assert_eq!(
            messages(acme_uid.clone(), "sluice_acme_orders").await,
            Some(5)
        );
        assert_eq!(
            messages(bravo_uid.clone(), "sluice_bravo_orders").await,
            Some(3)
        );
        assert_eq!(
            messages(acme_uid.clone(), "sluice_bravo_orders").await,
            None,
            "bravo's stream is not in acme's account"
        );

        // acme fills its 64 KiB: the broker refuses, the API answers 507.
        let mut refusal: Option<Value> = None;
        for _ in 0..40 {
            let (s, b, _) = api.ingest("acme", "orders", &acme, ndjson(8, 1000)).await;
            if s == 507 {
                refusal = Some(b);
                break;
            }
            assert_eq!(s, 202, "{b}");
        }
        let refusal = refusal.expect("acme's storage quota is enforced by the broker");
        assert!(
            refusal["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("storage-quota-exceeded")),
            "{refusal}"
        );
        assert_eq!(refusal["status"], 507);
        // bravo is unaffected.
        let (s, b, _) = api.ingest("bravo", "orders", &bravo, ndjson(8, 1000)).await;
        assert_eq!(s, 202, "{b}");

        assert!(operator.is_running());
        operator.stop().await;
        drop(api_process);
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
}
