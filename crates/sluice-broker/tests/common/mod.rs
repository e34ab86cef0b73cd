//! A real nats-server, started per test. In operator mode (a [`Broker`]) the operator, the
//! system account and its administrator are minted here, tenants' accounts are created through
//! the administrator, and users get creds files like the operator will mint them.

#![allow(dead_code)]

use async_nats::jetstream;
use nkeys::KeyPair;
use sluice_broker::claims::{AccountClaims, UserClaims};
use sluice_broker::keys::{Role, generate, seed};
use sluice_broker::limits::AccountLimits;
use sluice_broker::permissions::Permissions;
use sluice_broker::{AccountAdmin, creds::creds_file, jwt};
use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen within seconds.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A nats-server process with its data in a temporary directory, killed on drop.
pub struct Server {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A nats-server in operator mode.
pub struct Broker {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// The operator key: signs accounts and deletions.
    pub operator: KeyPair,
    /// The creds file text of the system account's administrator.
    pub admin_creds: String,
    /// The process.
    pub server: Server,
}

/// A tenant's account on the test broker.
pub struct Tenant {
    /// The tenant name.
    pub name: String,
    /// The account key pair: signs the tenant's users.
    pub account: KeyPair,
}

impl Tenant {
    /// The account's public key.
    pub fn public_key(&self) -> String {
        self.account.public_key()
    }

    /// The creds file text of a new user of this account with `permissions`.
    pub fn user(&self, name: &str, permissions: Permissions) -> String {
        self.user_with_key(name, permissions).1
    }

    /// A new user of this account with `permissions`: its public key and its creds file text.
    pub fn user_with_key(&self, name: &str, permissions: Permissions) -> (String, String) {
        let user = generate(Role::User);
        let claims = UserClaims::user(
            &self.account.public_key(),
            &user.public_key(),
            name,
            permissions,
            jwt::now(),
        );
        let jwt = jwt::encode(claims, &self.account).unwrap();
        (user.public_key(), creds_file(&jwt, &seed(&user)))
    }
}

fn find_on_path(binary: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

impl Server {
    /// Starts nats-server (from PATH) on a free local port with the configuration `config`
    /// writes for that port and a data directory; waits until it listens.
    pub fn start(config: impl FnOnce(u16, &Path) -> String) -> Server {
        let binary = find_on_path("nats-server").expect(
            "these tests need the nats-server binary on PATH (2.9 or later): install the \
             nats-server package, or download it from \
             https://github.com/nats-io/nats-server/releases",
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let config_path = dir.path().join("nats.conf");
        std::fs::write(&config_path, config(port, dir.path())).unwrap();
        let log = dir.path().join("nats.log");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut server = Server {
            url: format!("nats://127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        };
        server.wait_listening(port);
        server
    }

    fn wait_listening(&mut self, port: u16) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nats-server exited ({status}):\n{}", self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nats-server does not listen on {port} after 10 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote to stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    /// Starts nats-server in operator mode with a full resolver: a new operator, a system
    /// account and its administrator.
    pub fn start() -> Broker {
        let bootstrap = sluice_broker::Bootstrap::generate(jwt::now()).unwrap();
        let server =
            Server::start(|port, dir| bootstrap.server_config("127.0.0.1", port, dir).render());
        Broker {
            url: server.url.clone(),
            operator: bootstrap.operator,
            admin_creds: bootstrap.admin_creds,
            server,
        }
    }

    /// The account administrator, connected.
    pub async fn admin(&self) -> AccountAdmin {
        AccountAdmin::connect(&self.url, &self.admin_creds, self.operator.clone())
            .await
            .expect("the administrator connects")
    }

    /// The account JWT of a new tenant account, signed by the operator.
    pub fn account_jwt(&self, account: &KeyPair, name: &str, limits: &AccountLimits) -> String {
        let claims = AccountClaims::account(
            &self.operator.public_key(),
            &account.public_key(),
            name,
            limits,
            jwt::now(),
        );
        jwt::encode(claims, &self.operator).unwrap()
    }

    /// Creates a tenant's account with `limits`.
    pub async fn tenant(&self, admin: &AccountAdmin, name: &str, limits: &AccountLimits) -> Tenant {
        let account = generate(Role::Account);
        let message = admin
            .upsert_account(&self.account_jwt(&account, name, limits))
            .await
            .expect("the account is created");
        assert!(message.contains("jwt updated"), "{message}");
        Tenant {
            name: name.to_string(),
            account,
        }
    }
}

/// Connects with `creds` (a creds file's text).
pub async fn connect(
    url: &str,
    creds: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::with_credentials(creds)
        .unwrap()
        .connection_timeout(DEADLINE)
        .connect(url)
        .await
}

/// Connects with `creds` and passes on the client's events (server errors such as permission
/// violations, disconnections).
pub async fn connect_watched(
    url: &str,
    creds: &str,
) -> (
    async_nats::Client,
    mpsc::UnboundedReceiver<async_nats::Event>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_credentials(creds)
        .unwrap()
        .connection_timeout(DEADLINE)
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(url)
        .await
        .expect("the user connects");
    (client, rx)
}

/// A JetStream context whose requests wait up to [`DEADLINE`].
pub fn js(client: &async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(DEADLINE)
        .build(client.clone())
}

/// A JetStream context for requests the user may not make: the server drops them with a
/// permission violation, so they get no answer; it gives up after a second.
pub fn js_denied(client: &async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client.clone())
}

/// Waits for the next event that `wanted` accepts, up to [`DEADLINE`].
pub async fn event_where(
    events: &mut mpsc::UnboundedReceiver<async_nats::Event>,
    wanted: impl Fn(&async_nats::Event) -> bool,
) -> async_nats::Event {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let e = events.recv().await.expect("the client's events");
            if wanted(&e) {
                return e;
            }
        }
    })
    .await
    .expect("the awaited event within the deadline")
}

/// Polls `check` until it answers true, up to [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < DEADLINE,
            "not within {DEADLINE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
