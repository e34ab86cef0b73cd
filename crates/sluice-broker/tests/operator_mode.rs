//! Tenant isolation at a real nats-server in operator mode: anonymous clients refused, a
//! route's credentials limited to its own route, storage quotas held by the broker, and
//! deleted accounts revoked.

mod common;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::stream;
use common::{
    Broker, Server, Tenant, connect, connect_watched, event_where, eventually, js, js_denied,
};
use futures::StreamExt;
use sluice_broker::AdminError;
use sluice_broker::keys::{Role, generate};
use sluice_broker::limits::{AccountLimits, JetStreamLimits, Limit};
use sluice_broker::permissions::{self, Permissions, SubjectRules};
use sluice_core::route::RouteConfig;
use sluice_core::subjects;
use std::time::Duration;

fn unlimited() -> AccountLimits {
    AccountLimits {
        connections: Limit::Unlimited,
        jetstream: Some(JetStreamLimits::default()),
    }
}

/// Creates the tenant's stream `name` as the platform's stream manager of its account.
async fn create_stream(broker: &Broker, tenant: &Tenant, name: &str) -> async_nats::Client {
    let manager = connect(
        &broker.url,
        &tenant.user("operator", permissions::stream_manager()),
    )
    .await
    .unwrap();
    js(&manager)
        .create_stream(stream::Config {
            name: subjects::jetstream_name(&tenant.name, name),
            subjects: vec![subjects::stream_subjects(&tenant.name, name)],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("the stream manager creates the tenant's stream");
    manager
}

async fn stream_messages(manager: &async_nats::Client, stream: &str) -> u64 {
    js(manager)
        .get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

/// The configuration of tenant `tenant`'s route `orders` → NATS subject `alerts.big`.
fn route_config(url: &str, tenant: &str) -> RouteConfig {
    RouteConfig::from_json(&format!(
        r#"{{
          "tenant": "{tenant}", "pipeline": "orders", "route": "alerts",
          "source": {{"kind": "jetstream", "url": "{url}",
                     "stream": "{stream}", "subject": "{events}", "durable": "{durable}"}},
          "sink": {{"kind": "nats", "url": "{url}", "subject": "{sink}"}},
          "deadLetter": {{"url": "{url}", "subject": "{dead}"}}
        }}"#,
        stream = subjects::jetstream_name(tenant, "orders"),
        events = subjects::events_subject(tenant, "orders"),
        durable = subjects::durable_name("orders", "alerts"),
        sink = format_args!("{}.alerts.big", subjects::tenant_prefix(tenant)),
        dead = subjects::default_dead_letter_subject(tenant, "orders", "orders"),
    ))
    .unwrap()
}

fn assert_authorization_violation(err: &async_nats::ConnectError) {
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
}

/// The connection of `client` (whose events are `events`) is closed, and `creds` are refused.
async fn assert_shut_out(
    broker: &Broker,
    client: &async_nats::Client,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>,
    creds: &str,
) {
    event_where(events, |e| {
        matches!(
            e,
            async_nats::Event::Disconnected | async_nats::Event::Closed
        )
    })
    .await;
    assert_ne!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    let err = connect(&broker.url, creds)
        .await
        .expect_err("the credentials are refused");
    assert_authorization_violation(&err);
}

fn is_permission_violation(e: &async_nats::Event) -> bool {
    matches!(e, async_nats::Event::ServerError(async_nats::ServerError::Other(m))
        if m.to_lowercase().contains("permissions violation"))
}

#[tokio::test]
async fn anonymous_connections_are_refused() {
    let broker = Broker::start();
    let err = async_nats::ConnectOptions::new()
        .connection_timeout(common::DEADLINE)
        .connect(&broker.url)
        .await
        .expect_err("an anonymous client is refused");
    assert_authorization_violation(&err);
}

#[tokio::test]
async fn a_route_does_its_work_and_nothing_else() {
    let broker = Broker::start();
    let admin = broker.admin().await;
    let a = broker.tenant(&admin, "a", &unlimited()).await;
    let b = broker.tenant(&admin, "b", &unlimited()).await;
    let a_manager = create_stream(&broker, &a, "orders").await;
    let b_manager = create_stream(&broker, &b, "orders").await;
    let a_stream = subjects::jetstream_name("a", "orders");
    let b_stream = subjects::jetstream_name("b", "orders");

    // Ingest into each tenant's stream with the tenant's ingest user.
    for t in [&a, &b] {
        let ingest = connect(&broker.url, &t.user("ingest", permissions::ingest(&t.name)))
            .await
            .unwrap();
        for i in 0..3 {
            js(&ingest)
                .publish(
                    subjects::events_subject(&t.name, "orders"),
                    format!("{i}").into(),
                )
                .await
                .unwrap()
                .await
                .expect("ingest lands in the tenant's stream");
        }
    }

    // An observer of tenant A's subjects sees what the route publishes on its sink.
    let a_observer = connect(
        &broker.url,
        &a.user(
            "observer",
            Permissions {
                publish: SubjectRules::none(),
                subscribe: SubjectRules::allow(["sluice.a.>"]),
            },
        ),
    )
    .await
    .unwrap();
    let mut sink_watch = a_observer.subscribe("sluice.a.alerts.big").await.unwrap();
    a_observer.flush().await.unwrap();

    // Tenant A's route, with the permissions of its configuration.
    let config = route_config(&broker.url, "a");
    let (route, mut events) = connect_watched(
        &broker.url,
        &a.user("orders-alerts", permissions::route(&config)),
    )
    .await;
    let route_js = js(&route);

    // What the worker does: bind the stream, create its durable consumer, bind it again,
    // pull, acknowledge, publish to its sink and its dead-letter subject.
    let source = route_js.get_stream(&a_stream).await.expect("stream info");
    let durable = subjects::durable_name("orders", "alerts");
    source
        .create_consumer(pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: subjects::events_subject("a", "orders"),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("the route creates its durable consumer");
    let consumer = source
        .get_consumer::<pull::Config>(&durable)
        .await
        .expect("the route binds its durable consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(3)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("the route pulls");
    let mut pulled = 0;
    while let Some(m) = batch.next().await {
        m.expect("a pulled message").ack().await.expect("ack");
        pulled += 1;
    }
    assert_eq!(pulled, 3);
    eventually("the acks reach the consumer", || {
        let mut consumer = consumer.clone();
        async move {
            consumer
                .info()
                .await
                .is_ok_and(|i| i.num_ack_pending == 0 && i.num_pending == 0)
        }
    })
    .await;
    route
        .publish("sluice.a.alerts.big", "out".into())
        .await
        .unwrap();
    let delivered = tokio::time::timeout(common::DEADLINE, sink_watch.next())
        .await
        .expect("the sink subject gets the route's event")
        .unwrap();
    assert_eq!(&delivered.payload[..], b"out");
    route_js
        .publish(config.dead_letter.subject.clone(), "poison".into())
        .await
        .unwrap()
        .await
        .expect("the dead-letter publish is stored");
    assert_eq!(stream_messages(&a_manager, &a_stream).await, 4);

    // What it may not do; the server answers each attempt with a permission violation.
    // Tenant B's stream: neither its info nor a consumer on it.
    let denied = js_denied(&route);
    assert!(denied.get_stream(&b_stream).await.is_err());
    event_where(&mut events, is_permission_violation).await;
    let on_b = pull::Config {
        durable_name: Some(durable.clone()),
        filter_subject: subjects::events_subject("b", "orders"),
        ..Default::default()
    };
    assert!(
        denied
            .create_consumer_on_stream(on_b, &b_stream)
            .await
            .is_err()
    );
    event_where(&mut events, is_permission_violation).await;
    // Another consumer on its own stream.
    let other = pull::Config {
        durable_name: Some("other".into()),
        ..Default::default()
    };
    assert!(
        denied
            .create_consumer_on_stream(other, &a_stream)
            .await
            .is_err()
    );
    event_where(&mut events, is_permission_violation).await;
    // Deleting any stream.
    for stream in [&a_stream, &b_stream] {
        assert!(denied.delete_stream(stream).await.is_err());
        event_where(&mut events, is_permission_violation).await;
    }
    assert_eq!(stream_messages(&a_manager, &a_stream).await, 4);
    assert_eq!(stream_messages(&b_manager, &b_stream).await, 3);

    // Tenant B's subjects: publishing is refused and nothing lands in B's stream.
    route
        .publish(subjects::events_subject("b", "orders"), "intruder".into())
        .await
        .unwrap();
    route.flush().await.unwrap();
    event_where(&mut events, is_permission_violation).await;
    assert_eq!(stream_messages(&b_manager, &b_stream).await, 3);

    // Subscribing to B's subjects is refused, and B's events never arrive.
    let mut spy = route.subscribe("sluice.b.>").await.unwrap();
    route.flush().await.unwrap();
    event_where(&mut events, is_permission_violation).await;
    let b_ingest = connect(&broker.url, &b.user("ingest", permissions::ingest("b")))
        .await
        .unwrap();
    js(&b_ingest)
        .publish(subjects::events_subject("b", "orders"), "secret".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), spy.next())
            .await
            .map_or(true, |m| m.is_none()),
        "tenant A's route read tenant B's event"
    );

    // The account boundary holds even for A's stream manager, who may use all of A's
    // JetStream API: B's stream does not exist in A's account.
    let not_found = js(&a_manager).get_stream(&b_stream).await.unwrap_err();
    assert!(
        not_found.to_string().contains("stream not found"),
        "{not_found}"
    );
}

#[tokio::test]
async fn the_storage_limit_of_an_account_stops_its_stream() {
    let broker = Broker::start();
    let admin = broker.admin().await;
    let small = broker
        .tenant(
            &admin,
            "small",
            &AccountLimits {
                connections: Limit::Unlimited,
                jetstream: Some(JetStreamLimits {
                    storage_bytes: Limit::AtMost(64 * 1024),
                    ..Default::default()
                }),
            },
        )
        .await;
    let other = broker.tenant(&admin, "other", &unlimited()).await;
    create_stream(&broker, &small, "s").await;
    create_stream(&broker, &other, "s").await;
    let small_ingest = connect(
        &broker.url,
        &small.user("ingest", permissions::ingest("small")),
    )
    .await
    .unwrap();
    let other_ingest = connect(
        &broker.url,
        &other.user("ingest", permissions::ingest("other")),
    )
    .await
    .unwrap();
    let payload = vec![b'x'; 1024];

    let mut stored = 0;
    let refusal = loop {
        assert!(stored < 200, "64 KiB of storage took {stored} KiB");
        let ack = js(&small_ingest)
            .publish(
                subjects::events_subject("small", "s"),
                payload.clone().into(),
            )
            .await
            .unwrap()
            .await;
        match ack {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
    };
    assert!(stored > 0, "nothing was stored before the limit");
    let text = format!("{refusal} {:?}", std::error::Error::source(&refusal));
    assert!(text.contains("10002"), "{text}");
    assert!(text.contains("resource limits exceeded"), "{text}");

    // The other account keeps growing.
    for _ in 0..stored + 10 {
        js(&other_ingest)
            .publish(
                subjects::events_subject("other", "s"),
                payload.clone().into(),
            )
            .await
            .unwrap()
            .await
            .expect("another account is not limited by this one");
    }
}

#[tokio::test]
async fn deleting_an_account_revokes_its_credentials() {
    let broker = Broker::start();
    let admin = broker.admin().await;
    let gone = broker.tenant(&admin, "gone", &unlimited()).await;
    let creds = gone.user("ingest", permissions::ingest("gone"));
    let (client, mut events) = connect_watched(&broker.url, &creds).await;

    let message = admin
        .delete_accounts(&[gone.public_key()])
        .await
        .expect("the account is deleted");
    assert!(message.contains("deleted 1 accounts"), "{message}");

    assert_shut_out(&broker, &client, &mut events, &creds).await;
}

/// The administrator sends only accounts its operator signed. nats-server 2.9 itself stores an
/// account JWT another operator signed ("jwt updated"), but lets none of its users in.
#[tokio::test]
async fn accounts_not_signed_by_the_operator_give_no_access() {
    let broker = Broker::start();
    let admin = broker.admin().await;
    let intruder = generate(Role::Operator);
    let account = generate(Role::Account);
    let claims = sluice_broker::AccountClaims::account(
        &intruder.public_key(),
        &account.public_key(),
        "intruder",
        &unlimited(),
        sluice_broker::jwt::now(),
    );
    let jwt = sluice_broker::jwt::encode(claims, &intruder).unwrap();
    assert!(matches!(
        admin.upsert_account(&jwt).await,
        Err(AdminError::ForeignIssuer { .. })
    ));

    let raw = connect(&broker.url, &broker.admin_creds).await.unwrap();
    raw.request(sluice_broker::admin::CLAIMS_UPDATE, jwt.into())
        .await
        .expect("the server answers");
    let tenant = Tenant {
        name: "intruder".into(),
        account,
    };
    let err = connect(
        &broker.url,
        &tenant.user("u", permissions::ingest("intruder")),
    )
    .await
    .expect_err("a user of an account the operator did not sign is refused");
    assert_authorization_violation(&err);
}

/// The stream limit holds, and updating the account's JWT changes its limits in place.
#[tokio::test]
async fn updating_an_account_changes_its_limits() {
    let broker = Broker::start();
    let admin = broker.admin().await;
    let limits = |streams| AccountLimits {
        connections: Limit::Unlimited,
        jetstream: Some(JetStreamLimits {
            streams: Limit::AtMost(streams),
            ..Default::default()
        }),
    };
    let t = broker.tenant(&admin, "t", &limits(1)).await;
    let manager = create_stream(&broker, &t, "first").await;
    let second = || stream::Config {
        name: subjects::jetstream_name("t", "second"),
        subjects: vec![subjects::stream_subjects("t", "second")],
        storage: stream::StorageType::File,
        ..Default::default()
    };
    let refused = js(&manager).create_stream(second()).await.unwrap_err();
    assert!(
        refused.to_string().contains("maximum number of streams"),
        "{refused}"
    );

    let message = admin
        .upsert_account(&broker.account_jwt(&t.account, "t", &limits(2)))
        .await
        .unwrap();
    assert!(message.contains("jwt updated"), "{message}");
    eventually("the new stream limit applies", || {
        let js = js(&manager);
        async move { js.create_stream(second()).await.is_ok() }
    })
    .await;
}

/// Revoking a user in the account JWT closes its connection and refuses it, while the other
/// users of the account go on: how a route's credentials are rotated.
#[tokio::test]
async fn a_revoked_user_is_refused_and_the_others_go_on() {
    let broker = Broker::start();
    let admin = broker.admin().await;
    let t = broker.tenant(&admin, "t", &unlimited()).await;
    let (old_user, old_creds) = t.user_with_key("old", permissions::ingest("t"));
    let (old, mut events) = connect_watched(&broker.url, &old_creds).await;
    let new = connect(&broker.url, &t.user("new", permissions::ingest("t")))
        .await
        .unwrap();

    let claims = sluice_broker::AccountClaims::account(
        &broker.operator.public_key(),
        &t.public_key(),
        "t",
        &unlimited(),
        sluice_broker::jwt::now(),
    )
    .revoke_users([old_user], sluice_broker::jwt::now());
    let jwt = sluice_broker::jwt::encode(claims, &broker.operator).unwrap();
    admin.upsert_account(&jwt).await.unwrap();

    assert_shut_out(&broker, &old, &mut events, &old_creds).await;
    new.flush().await.expect("the other users go on");
    assert_eq!(
        new.connection_state(),
        async_nats::connection::State::Connected
    );
}

/// The administrator's requests against a server that is not in operator mode get no answer,
/// and say so.
#[tokio::test]
async fn a_server_without_operator_mode_is_named_in_the_error() {
    let broker = Broker::start();
    let plain = Server::start(|port, _| format!("host: \"127.0.0.1\"\nport: {port}\n"));
    let admin = sluice_broker::AccountAdmin::connect(
        &plain.url,
        &broker.admin_creds,
        broker.operator.clone(),
    )
    .await
    .expect("a server without authentication lets anybody in");
    let account = generate(Role::Account);
    let jwt = broker.account_jwt(&account, "t", &unlimited());
    let err = admin.upsert_account(&jwt).await.unwrap_err();
    assert!(matches!(err, AdminError::NoAnswer { .. }), "{err:?}");
    assert!(err.to_string().contains("operator mode"), "{err}");
}

/// A stream with a size (`max_bytes`) reserves that much of its account's storage when it is
/// created: streams whose sizes add up past the account's storage are refused (error 10047),
/// while a stream without a size shares what is left.
#[tokio::test]
async fn sized_streams_reserve_the_account_storage() {
    let broker = Broker::start();
    let admin = broker.admin().await;
    let t = broker
        .tenant(
            &admin,
            "t",
            &AccountLimits {
                connections: Limit::Unlimited,
                jetstream: Some(JetStreamLimits {
                    storage_bytes: Limit::AtMost(64 * 1024),
                    ..Default::default()
                }),
            },
        )
        .await;
    let manager = connect(
        &broker.url,
        &t.user("operator", permissions::stream_manager()),
    )
    .await
    .unwrap();
    let sized = |name: &str, max_bytes: i64| stream::Config {
        name: subjects::jetstream_name("t", name),
        subjects: vec![subjects::stream_subjects("t", name)],
        max_bytes,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    let too_big = js(&manager)
        .create_stream(sized("big", 128 * 1024))
        .await
        .unwrap_err();
    assert!(too_big.to_string().contains("10047"), "{too_big}");
    js(&manager)
        .create_stream(sized("half", 32 * 1024))
        .await
        .expect("half the account's storage");
    let past = js(&manager)
        .create_stream(sized("more", 48 * 1024))
        .await
        .unwrap_err();
    assert!(past.to_string().contains("10047"), "{past}");
    js(&manager)
        .create_stream(sized("unsized", -1))
        .await
        .expect("a stream without a size");
}

/// A scoped signing key of an account signs users of that account that can do exactly what
/// the key's template allows: the ingest door of one tenant. A scoped user's JWT carrying
/// permissions of its own is refused, and so is a user signed by a key the account does not
/// list.
#[tokio::test]
async fn a_scoped_signing_key_signs_users_limited_to_its_template() {
    let broker = Broker::start();
    let admin = broker.admin().await;
    let t = broker.tenant(&admin, "t", &unlimited()).await;
    let manager = create_stream(&broker, &t, "orders").await;
    let signing = generate(Role::Account);
    let claims = sluice_broker::AccountClaims::account(
        &broker.operator.public_key(),
        &t.public_key(),
        "t",
        &unlimited(),
        sluice_broker::jwt::now(),
    );
    let mut claims = claims;
    claims
        .nats
        .signing_keys
        .push(sluice_broker::claims::ScopedSigningKey::new(
            &signing.public_key(),
            "ingest",
            permissions::ingest_scope("t"),
        ));
    let jwt = sluice_broker::jwt::encode(claims, &broker.operator).unwrap();
    admin.upsert_account(&jwt).await.unwrap();

    // A user the signing key issues, with no permissions of its own.
    let user = generate(Role::User);
    let user_claims = sluice_broker::UserClaims::scoped_user(
        &t.public_key(),
        &signing.public_key(),
        &user.public_key(),
        "ingest",
        sluice_broker::jwt::now(),
    );
    let user_jwt = sluice_broker::jwt::encode(user_claims, &signing).unwrap();
    let creds = sluice_broker::creds::creds_file(&user_jwt, &sluice_broker::keys::seed(&user));
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_credentials(&creds)
        .unwrap()
        .custom_inbox_prefix(permissions::INGEST_INBOX_PREFIX)
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(&broker.url)
        .await
        .expect("the scoped user connects");
    // Its events reach the tenant's stream, acknowledged.
    js(&client)
        .publish("sluice.t.orders.events", "e".into())
        .await
        .unwrap()
        .await
        .expect("the template allows the tenant's events subjects");
    assert_eq!(stream_messages(&manager, "sluice_t_orders").await, 1);
    // Anything else is a permission violation: the template, not its JWT, decides.
    assert!(
        js_denied(&client)
            .delete_stream("sluice_t_orders")
            .await
            .is_err(),
        "no JetStream API"
    );
    event_where(&mut events, is_permission_violation).await;
    client
        .publish("sluice.t.orders.other", "x".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    event_where(&mut events, is_permission_violation).await;
    // Nor can it read the account's other replies, on the usual inbox prefix.
    let _ = client.subscribe("_INBOX.>").await;
    client.flush().await.unwrap();
    event_where(&mut events, is_permission_violation).await;
    assert_eq!(stream_messages(&manager, "sluice_t_orders").await, 1);

    // A scoped user whose JWT asks for permissions of its own is refused outright.
    let greedy = generate(Role::User);
    let mut greedy_claims = sluice_broker::UserClaims::scoped_user(
        &t.public_key(),
        &signing.public_key(),
        &greedy.public_key(),
        "greedy",
        sluice_broker::jwt::now(),
    );
    greedy_claims.nats.permissions = Permissions {
        publish: SubjectRules::allow([">"]),
        subscribe: SubjectRules::allow([">"]),
    };
    let greedy_jwt = sluice_broker::jwt::encode(greedy_claims, &signing).unwrap();
    let err = connect(
        &broker.url,
        &sluice_broker::creds::creds_file(&greedy_jwt, &sluice_broker::keys::seed(&greedy)),
    )
    .await
    .expect_err("a scoped user may not carry permissions");
    assert_authorization_violation(&err);

    // A key the account does not list signs nobody in.
    let stranger = generate(Role::Account);
    let other = generate(Role::User);
    let forged = sluice_broker::jwt::encode(
        sluice_broker::UserClaims::scoped_user(
            &t.public_key(),
            &stranger.public_key(),
            &other.public_key(),
            "forged",
            sluice_broker::jwt::now(),
        ),
        &stranger,
    )
    .unwrap();
    let err = connect(
        &broker.url,
        &sluice_broker::creds::creds_file(&forged, &sluice_broker::keys::seed(&other)),
    )
    .await
    .expect_err("a signing key the account does not list");
    assert_authorization_violation(&err);
}

/// The users a scoped signing key issued, for a signing key `key` of account `t`.
fn scoped_creds(t: &Tenant, key: &nkeys::KeyPair, name: &str) -> String {
    let user = generate(Role::User);
    let claims = sluice_broker::UserClaims::scoped_user(
        &t.public_key(),
        &key.public_key(),
        &user.public_key(),
        name,
        sluice_broker::jwt::now(),
    );
    let jwt = sluice_broker::jwt::encode(claims, key).unwrap();
    sluice_broker::creds::creds_file(&jwt, &sluice_broker::keys::seed(&user))
}

/// Removing a scoped signing key from the account JWT closes the connections of the users it
/// signed and refuses them afterwards, while the users of the account's other keys go on: how
/// a route's credentials are revoked (its key leaves the account) and rotated (a new key comes
/// in, the old one leaves once the new pods run).
#[tokio::test]
async fn removing_a_signing_key_shuts_out_the_users_it_signed() {
    let broker = Broker::start();
    let admin = broker.admin().await;
    let t = broker.tenant(&admin, "t", &unlimited()).await;
    let (old_key, new_key) = (generate(Role::Account), generate(Role::Account));
    let account = |keys: &[&nkeys::KeyPair]| {
        let mut claims = sluice_broker::AccountClaims::account(
            &broker.operator.public_key(),
            &t.public_key(),
            "t",
            &unlimited(),
            sluice_broker::jwt::now(),
        );
        for k in keys {
            claims
                .nats
                .signing_keys
                .push(sluice_broker::claims::ScopedSigningKey::new(
                    &k.public_key(),
                    "route",
                    permissions::ingest("t"),
                ));
        }
        sluice_broker::jwt::encode(claims, &broker.operator).unwrap()
    };
    admin.upsert_account(&account(&[&old_key])).await.unwrap();
    let old_creds = scoped_creds(&t, &old_key, "old");
    let (old, mut events) = connect_watched(&broker.url, &old_creds).await;

    // Rotation: both keys while the new pods start, then only the new one.
    admin
        .upsert_account(&account(&[&old_key, &new_key]))
        .await
        .unwrap();
    let new = connect(&broker.url, &scoped_creds(&t, &new_key, "new"))
        .await
        .expect("the new key signs users in");
    old.flush()
        .await
        .expect("the old key still works meanwhile");
    admin.upsert_account(&account(&[&new_key])).await.unwrap();

    assert_shut_out(&broker, &old, &mut events, &old_creds).await;
    new.flush().await.expect("the new key's users go on");
    assert_eq!(
        new.connection_state(),
        async_nats::connection::State::Connected
    );
}
