//! One client's connection to a fake futu-authd that holds its answers or closes on
//! command: many concurrent callers each get their own answer; a caller dropped while
//! others wait leaves them their answers (and its order is released); callers waiting when the daemon closes are
//! told at once, and the next call reconnects; an order allowed after its caller gave up
//! is released though no other call comes;
//! requests larger than the socket takes at once arrive whole.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futu_auth_client::{AuthClient, ClientError, Decision, Iface, Token};
use futu_auth_proto::{FrameCodec, KeyId, Market, Order, Request, Response, TrdEnv, TrdSide};
use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_util::codec::Framed;

const TOKEN: &str = "fc_8a3f2b9c1e5d7a4b8c2f9e1d3a5b7c9f";

/// A daemon that allows every check as key `k<endpoint>` (an order with its request id as
/// ticket); while `hold` is set it keeps its answers until [`Fake::flush`], then sends
/// them newest first.
struct Fake {
    _dir: tempfile::TempDir,
    path: PathBuf,
    seen: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    /// Connections open now.
    live: Arc<AtomicUsize>,
    hold: Arc<AtomicBool>,
    /// Bumped to make the daemon send the answers it holds.
    flush: watch::Sender<u64>,
    /// Bumped to make the daemon close every connection it has.
    generation: watch::Sender<u64>,
}

impl Fake {
    async fn start() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let fake = Fake {
            _dir: dir,
            path,
            seen: Arc::default(),
            connections: Arc::default(),
            live: Arc::default(),
            hold: Arc::default(),
            flush: watch::channel(0).0,
            generation: watch::channel(0).0,
        };
        let (seen, connections, live, hold) = (
            Arc::clone(&fake.seen),
            Arc::clone(&fake.connections),
            Arc::clone(&fake.live),
            Arc::clone(&fake.hold),
        );
        let generation = fake.generation.subscribe();
        let flush = fake.flush.subscribe();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                live.fetch_add(1, Ordering::SeqCst);
                let (seen, live, hold) = (Arc::clone(&seen), Arc::clone(&live), Arc::clone(&hold));
                let mut generation = generation.clone();
                generation.mark_unchanged();
                let mut flush = flush.clone();
                flush.mark_unchanged();
                tokio::spawn(async move {
                    let _live = Live(live);
                    let mut framed = Framed::new(stream, FrameCodec::<Request, Response>::new());
                    let mut held = Vec::new();
                    loop {
                        tokio::select! {
                            _ = generation.changed() => return,
                            _ = flush.changed() => {
                                while let Some(answer) = held.pop() {
                                    if framed.send(answer).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            msg = framed.next() => {
                                let Some(Ok(msg)) = msg else { return };
                                let answer = answer(&msg);
                                if !matches!(msg, Request::Hello(_)) {
                                    seen.lock().unwrap().push(msg.clone());
                                }
                                if hold.load(Ordering::SeqCst) && !matches!(msg, Request::Hello(_)) {
                                    held.push(answer);
                                } else if framed.send(answer).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        fake
    }

    fn client(&self, deadline: Duration) -> AuthClient {
        AuthClient::builder(&self.path).deadline(deadline).build()
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    fn releases(&self) -> usize {
        self.seen()
            .iter()
            .filter(|m| matches!(m, Request::Release { .. }))
            .count()
    }

    /// Waits until the daemon was sent `n` requests (Hello aside).
    async fn until_seen(&self, n: usize) {
        for _ in 0..500 {
            if self.seen().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the daemon was sent {} requests, not {n}", self.seen().len());
    }

    /// Sends the answers held, newest first.
    fn flush(&self) {
        self.flush.send_modify(|g| *g += 1);
    }

    /// Closes every connection the daemon has (it keeps listening), and waits until they
    /// are closed.
    async fn close_connections(&self) {
        self.generation.send_modify(|g| *g += 1);
        for _ in 0..500 {
            if self.live.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the fake daemon did not close its connections");
    }
}

/// Counts a connection open while it lives.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn answer(msg: &Request) -> Response {
    match msg {
        Request::Hello(h) => Response::HelloOk {
            protocol_version: h.protocol_version,
            server_version: "fake".into(),
        },
        Request::Check(c) => Response::Decision {
            request_id: c.request_id,
            decision: Decision::Allow {
                key_id: format!("k{}", c.endpoint).parse::<KeyId>().unwrap(),
                scope: None,
                ticket: c.order.as_ref().map(|_| c.request_id),
            },
        },
        Request::Release { request_id, .. } => Response::Released {
            request_id: *request_id,
            key_id: "k".parse::<KeyId>().unwrap(),
            refunded_value: 1.0,
        },
        other => panic!("the fake daemon was sent {other:?}"),
    }
}

fn order() -> Order {
    Order {
        env: TrdEnv::Simulate,
        market: Market::HK,
        symbol: "HK.00700".into(),
        side: TrdSide::BUY,
        qty: 100.0,
        price: Some(388.2),
    }
}

/// A check of endpoint `n` (answered as key `k<n>`), an order when `order`.
async fn check(client: &AuthClient, n: usize, order: Option<Order>) -> Result<String, ClientError> {
    let token = Token::new(TOKEN);
    match client.check(&token, Iface::Rest, &n.to_string(), order).await? {
        Decision::Allow { key_id, .. } => Ok(key_id.to_string()),
        other => panic!("the fake allows everything: {other:?}"),
    }
}

fn spawn_check(
    client: &AuthClient,
    n: usize,
    order: Option<Order>,
) -> tokio::task::JoinHandle<Result<String, ClientError>> {
    let client = client.clone();
    tokio::spawn(async move { check(&client, n, order).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_callers_each_get_their_own_answer_on_one_connection() {
    let fake = Fake::start().await;
    let client = fake.client(Duration::from_secs(10));
    for round in 0..3 {
        // Answered as they come in one round; held and sent back newest first in another.
        fake.hold.store(round == 1, Ordering::SeqCst);
        let tasks: Vec<_> = (0..500).map(|n| spawn_check(&client, n, None)).collect();
        if round == 1 {
            fake.until_seen(500 * 2).await;
            fake.flush();
        }
        for (n, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap().unwrap(), format!("k{n}"), "round {round}");
        }
    }
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_caller_dropped_while_others_wait_leaves_them_their_answers() {
    let fake = Fake::start().await;
    let client = fake.client(Duration::from_secs(10));
    check(&client, 0, None).await.unwrap();
    fake.hold.store(true, Ordering::SeqCst);
    // The first caller is dropped while its answer and the others' are held.
    let first = spawn_check(&client, 1, Some(order()));
    fake.until_seen(2).await;
    let others: Vec<_> = (2..50).map(|n| spawn_check(&client, n, None)).collect();
    fake.until_seen(50).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    fake.flush();
    for (n, task) in (2..).zip(others) {
        assert_eq!(task.await.unwrap().unwrap(), format!("k{n}"));
    }
    // The order allowed to the caller that went away is released.
    for _ in 0..500 {
        if fake.releases() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.releases(), 1, "{:?}", fake.seen());
    assert_eq!(client.late_releases(), 1);
    // And the connection serves the next call.
    fake.hold.store(false, Ordering::SeqCst);
    assert_eq!(check(&client, 99, None).await.unwrap(), "k99");
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_when_the_daemon_closes_are_told_at_once_and_the_next_call_reconnects() {
    let fake = Fake::start().await;
    // A deadline far away: an answer within it is the connection's end, not a timeout.
    let client = fake.client(Duration::from_secs(30));
    check(&client, 0, None).await.unwrap();
    fake.hold.store(true, Ordering::SeqCst);
    let waiting: Vec<_> = (1..20).map(|n| spawn_check(&client, n, None)).collect();
    fake.until_seen(20).await;
    fake.close_connections().await;
    for task in waiting {
        let got = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("told before the deadline")
            .unwrap();
        assert!(matches!(got, Err(ClientError::Closed)), "{got:?}");
    }
    fake.hold.store(false, Ordering::SeqCst);
    assert_eq!(check(&client, 21, None).await.unwrap(), "k21");
    assert_eq!(fake.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_allowed_after_its_caller_timed_out_is_released_with_no_other_call() {
    let fake = Fake::start().await;
    let client = fake.client(Duration::from_millis(100));
    check(&client, 0, None).await.unwrap();
    fake.hold.store(true, Ordering::SeqCst);
    let late = check(&client, 1, Some(order())).await;
    assert!(matches!(late, Err(ClientError::Timeout(_))), "{late:?}");
    fake.flush();
    for _ in 0..500 {
        if fake.releases() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = fake.seen();
    let Some(Request::Release { ticket, .. }) = seen.iter().find(|m| matches!(m, Request::Release { .. }))
    else {
        panic!("no release: {seen:?}");
    };
    let Request::Check(order_check) = &seen[1] else {
        panic!("the order's check: {seen:?}")
    };
    assert_eq!(*ticket, order_check.request_id);
    assert_eq!(client.late_releases(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_while_others_wait_leave_the_others_their_answers() {
    let fake = Fake::start().await;
    let client = fake.client(Duration::from_secs(10));
    check(&client, 0, None).await.unwrap();
    fake.hold.store(true, Ordering::SeqCst);
    // Every other caller is dropped while the answers are held.
    let tasks: Vec<_> = (1..101).map(|n| spawn_check(&client, n, None)).collect();
    fake.until_seen(101).await;
    let mut kept = Vec::new();
    for (n, task) in (1..).zip(tasks) {
        if n % 2 == 1 {
            task.abort();
        } else {
            kept.push((n, task));
        }
    }
    fake.flush();
    for (n, task) in kept {
        assert_eq!(task.await.unwrap().unwrap(), format!("k{n}"));
    }
    fake.hold.store(false, Ordering::SeqCst);
    assert_eq!(check(&client, 200, None).await.unwrap(), "k200");
    // Reads were not allowed anything to release.
    assert_eq!(client.late_releases(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_larger_than_the_socket_takes_at_once_arrive_whole() {
    let fake = Fake::start().await;
    let client = fake.client(Duration::from_secs(10));
    // 60 requests of ~50 KiB each: far more than a Unix socket's buffer, so callers queue
    // behind a partly written frame and the writer task writes the rest.
    let big = Order {
        symbol: format!("HK.{}", "7".repeat(50_000)),
        ..order()
    };
    let tasks: Vec<_> = (0..60)
        .map(|n| spawn_check(&client, n, Some(big.clone())))
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap().unwrap(), format!("k{n}"));
    }
    let seen = fake.seen();
    assert_eq!(seen.len(), 60);
    assert!(seen
        .iter()
        .all(|m| matches!(m, Request::Check(c) if c.order.as_ref().is_some_and(|o| o.symbol == big.symbol))));
    assert_eq!(fake.connections.load(Ordering::SeqCst), 1);
}
