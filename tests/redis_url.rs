//! `[store] url` honours the password and the database number (issue 5).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jwtgate::config::{StoreBackend, StoreSettings};
use jwtgate::store::Family;

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn settings(url: String) -> StoreSettings {
    StoreSettings {
        backend: StoreBackend::Redis,
        path: "unused".into(),
        url: Some(url),
        tls_ca: None,
        timeout: Duration::from_millis(500),
        max_staleness: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_database_number_are_honoured() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--requirepass", "s3cret-pw"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is not installed: apt-get install redis-server (scripts/test.sh does)");
    let _server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }

    let wrong = jwtgate::store::open(&settings(format!("redis://:nope@127.0.0.1:{port}/5"))).await;
    assert!(wrong.is_err(), "a wrong password must not connect");
    let url = format!("redis://:s3cret-pw@127.0.0.1:{port}/5");
    let store = jwtgate::store::open(&settings(url.clone())).await.expect("password and db 5");
    let now = jwtgate::clock::Clock::now(&jwtgate::clock::SystemClock);
    store.start_family(&Family::new("fam-db5", "alice", "r0", now, 3600)).await.unwrap();
    assert_eq!(store.family("fam-db5").await.unwrap().unwrap().sub, "alice");

    // The record lives in database 5, not in 0.
    let exists = |db: u8| {
        let url = format!("redis://:s3cret-pw@127.0.0.1:{port}/{db}");
        async move {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let n: i64 =
                redis::cmd("EXISTS").arg("jwtgate:family:fam-db5").query_async(&mut conn).await.unwrap();
            n
        }
    };
    assert_eq!(exists(5).await, 1);
    assert_eq!(exists(0).await, 0);
}
