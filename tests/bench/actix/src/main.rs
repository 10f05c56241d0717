//! bench-actix — the programs of bench-actors.c written with actix (crates.io), the peer
//! in tests/bench/actors.sh.
//!
//! Cases, as in bench-actors.c:
//!   tell-1-unbatched   one sender thread, `Addr::do_send()` per message, one actor on its
//!                      own Arbiter (thread)
//!   tell-1-batched     actix has no batch send (no call that enqueues several messages
//!                      at once): the same program as tell-1-unbatched
//!   tell-2-senders     two sender threads into one mailbox, `do_send()`
//!   tell-2-vec         two sender threads, each message a Vec of BATCH numbers handled in
//!                      one call: batching by the application, not the mailbox; counted
//!                      in numbers per second, informational
//!   pingpong           round trip between two actors on two Arbiters, by tells
//!                      (`do_send()` each way)
//!   ask                round trip by ask across two threads: a future on one Arbiter
//!                      awaits `Addr::send()` to an actor on another
//! `do_send()` ignores the mailbox capacity (16 by default); `try_send()` honours it and
//! fails when full, so a sender would spin. The time runs from the first send to the
//! counting actor's signal. Every case runs --runs times; the median is printed as
//! `case unit value` lines.
//!
//! Usage: bench-actix [--messages N] [--rounds R] [--runs K] [--case NAME]
//!
//! Copyright the Tally authors. SPDX-License-Identifier: MIT

use actix::prelude::*;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const BATCH: usize = 1024;
/// The longest a case's run may take before bench-actix gives up on it (Done::wait).
const WAIT_LIMIT: Duration = Duration::from_secs(120);

#[derive(Default)]
struct Done {
    flag: Mutex<bool>,
    cond: Condvar,
}

impl Done {
    fn signal(&self) {
        *self.flag.lock().unwrap() = true;
        self.cond.notify_one();
    }
    /// Waits for the signal; after WAIT_LIMIT without it, says so and exits 1, so that a
    /// run that never ends (once, 2026-12-07: a ping-pong run with both Arbiters idle in
    /// epoll_wait and the signal never sent) ends the script instead of hanging it.
    fn wait(&self) {
        let mut g = self.flag.lock().unwrap();
        while !*g {
            let (next, timeout) = self.cond.wait_timeout(g, WAIT_LIMIT).unwrap();
            g = next;
            if timeout.timed_out() && !*g {
                eprintln!(
                    "bench-actix: no end signal within {} s: a message was lost or a thread \
                     never woke; exiting",
                    WAIT_LIMIT.as_secs()
                );
                std::process::exit(1);
            }
        }
        *g = false;
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Number(i64);

#[derive(Message)]
#[rtype(result = "()")]
struct Numbers(Vec<i64>);

struct Counter {
    count: i64,
    target: i64,
    done: Arc<Done>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Number> for Counter {
    type Result = ();
    fn handle(&mut self, msg: Number, _: &mut Context<Self>) {
        self.count += msg.0;
        if self.count == self.target {
            self.done.signal();
        }
    }
}

impl Handler<Numbers> for Counter {
    type Result = ();
    fn handle(&mut self, msg: Numbers, _: &mut Context<Self>) {
        for v in msg.0 {
            self.count += v;
        }
        if self.count == self.target {
            self.done.signal();
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Ping(i64, Addr<Player>);

#[derive(Message)]
#[rtype(result = "()")]
struct Pong(i64);

struct Player {
    peer: Option<Addr<Player>>,
    rounds: i64,
    done: Arc<Done>,
}

impl Actor for Player {
    type Context = Context<Self>;
}

impl Handler<Ping> for Player {
    type Result = ();
    fn handle(&mut self, msg: Ping, _: &mut Context<Self>) {
        msg.1.do_send(Pong(msg.0));
    }
}

impl Handler<Pong> for Player {
    type Result = ();
    fn handle(&mut self, msg: Pong, ctx: &mut Context<Self>) {
        if msg.0 == self.rounds {
            self.done.signal();
        } else if let Some(peer) = &self.peer {
            peer.do_send(Ping(msg.0 + 1, ctx.address()));
        }
    }
}

#[derive(Message)]
#[rtype(result = "i64")]
struct Ask(i64);

struct Answerer;

impl Actor for Answerer {
    type Context = Context<Self>;
}

impl Handler<Ask> for Answerer {
    type Result = i64;
    fn handle(&mut self, msg: Ask, _: &mut Context<Self>) -> i64 {
        msg.0 + 1
    }
}

/// Messages per second with `senders` threads sending `n` messages in all.
fn run_tell(n: i64, senders: i64, vec: bool) -> f64 {
    let done = Arc::new(Done::default());
    let arbiter = Arbiter::new();
    let d = done.clone();
    let addr = Counter::start_in_arbiter(&arbiter.handle(), move |_| Counter {
        count: 0,
        target: n,
        done: d,
    });
    let start = Instant::now();
    let threads: Vec<_> = (0..senders)
        .map(|_| {
            let addr = addr.clone();
            let per = n / senders;
            std::thread::spawn(move || {
                if vec {
                    let mut i = 0;
                    while i < per {
                        let k = std::cmp::min(BATCH as i64, per - i);
                        addr.do_send(Numbers(vec![1; k as usize]));
                        i += k;
                    }
                } else {
                    for _ in 0..per {
                        addr.do_send(Number(1));
                    }
                }
            })
        })
        .collect();
    done.wait();
    let elapsed = start.elapsed().as_secs_f64();
    for t in threads {
        t.join().unwrap();
    }
    arbiter.stop();
    arbiter.join().ok();
    n as f64 / elapsed
}

/// Microseconds per round trip of tells between two actors on two Arbiters.
fn run_pingpong(rounds: i64) -> f64 {
    let done = Arc::new(Done::default());
    let one = Arbiter::new();
    let two = Arbiter::new();
    let d = done.clone();
    let pong = Player::start_in_arbiter(&two.handle(), move |_| Player {
        peer: None,
        rounds,
        done: d,
    });
    let d = done.clone();
    let p = pong.clone();
    let ping = Player::start_in_arbiter(&one.handle(), move |_| Player {
        peer: Some(p),
        rounds,
        done: d,
    });
    let start = Instant::now();
    pong.do_send(Ping(1, ping));
    done.wait();
    let elapsed = start.elapsed().as_secs_f64();
    one.stop();
    two.stop();
    one.join().ok();
    two.join().ok();
    elapsed * 1e6 / rounds as f64
}

/// Microseconds per ask round trip: a future on one Arbiter awaits `send()` to an actor
/// on another.
fn run_ask(rounds: i64) -> f64 {
    let done = Arc::new(Done::default());
    let one = Arbiter::new();
    let two = Arbiter::new();
    let answerer = Answerer::start_in_arbiter(&two.handle(), |_| Answerer);
    let d = done.clone();
    let start = Instant::now();
    one.spawn(async move {
        let mut v = 0;
        for _ in 0..rounds {
            v = answerer.send(Ask(v)).await.expect("ask failed");
        }
        assert_eq!(v, rounds);
        d.signal();
    });
    done.wait();
    let elapsed = start.elapsed().as_secs_f64();
    one.stop();
    two.stop();
    one.join().ok();
    two.join().ok();
    elapsed * 1e6 / rounds as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn main() {
    let mut messages: i64 = 10_000_000;
    let mut rounds: i64 = 100_000;
    let mut runs: usize = 3;
    let mut only: Option<String> = None;
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--messages" | "-n" => messages = value.parse().expect("--messages N"),
            "--rounds" | "-r" => rounds = value.parse().expect("--rounds R"),
            "--runs" | "-k" => runs = value.parse().expect("--runs K"),
            "--case" | "-c" => only = Some(value),
            other => {
                eprintln!("bench-actix: unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    if runs < 1 || messages < 2 || rounds < 1 {
        eprintln!("bench-actix: bad arguments");
        std::process::exit(2);
    }
    // Arbiter::new() registers with the current System; the System's own loop is not run.
    let _system = System::new();
    let want = |name: &str| only.as_deref().map_or(true, |o| o == name);
    let tell = |senders, vec| median((0..runs).map(|_| run_tell(messages, senders, vec)).collect());
    if want("tell-1-unbatched") {
        println!("tell-1-unbatched msgs/s {:.0}", tell(1, false));
    }
    if want("tell-1-batched") {
        println!("tell-1-batched msgs/s {:.0}", tell(1, false));
    }
    if want("tell-2-senders") {
        println!("tell-2-senders msgs/s {:.0}", tell(2, false));
    }
    if want("tell-2-vec") {
        println!("tell-2-vec msgs/s {:.0}", tell(2, true));
    }
    if want("pingpong") {
        let v = median((0..runs).map(|_| run_pingpong(rounds)).collect());
        println!("pingpong us/round-trip {:.3}", v);
    }
    if want("ask") {
        let v = median((0..runs).map(|_| run_ask(rounds)).collect());
        println!("ask us/round-trip {:.3}", v);
    }
}
