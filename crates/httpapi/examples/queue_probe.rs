//! Tries what a local program may do with request queues, step by step,
//! and prints each outcome: what an administrator (or a test) runs, as
//! another user, to see that the listener's queues keep their owners.
//!
//! ```sh
//! queue_probe --socket inetsrv-data/run/httpapi.sock create Squat hold
//! queue_probe --socket … open DefaultAppPool stop
//! ```
//!
//! Steps, done in order on one session:
//! - `create NAME` / `open NAME`: the queue the next steps work on (the
//!   ones before it stay open);
//! - `stop`, `start`: set it stopped or started;
//! - `flush PREFIX`: flush the listener's cache under PREFIX;
//! - `url PREFIX`: register PREFIX on it;
//! - `many N`: create N more queues (`probe-0` …), up to the first error;
//! - `sessions N`: open N more sessions, up to the first refused;
//! - `hold`: keep the session (and its queues) until standard input ends.
//!
//! Each step prints `STEP: ok [value]` or `STEP: error CODE: message`.

use std::io::Read;
use std::path::PathBuf;

use httpapi::{Queue, Session};

fn usage() -> ! {
    eprintln!("usage: queue_probe --socket PATH STEP...  (steps: create NAME, open NAME, stop, start, flush PREFIX, url PREFIX, many N, sessions N, hold)");
    std::process::exit(2);
}

/// Prints a step's outcome; `show` gives what a success says.
fn report<T>(step: &str, result: httpapi::Result<T>, show: impl Fn(&T) -> String) -> Option<T> {
    match result {
        Ok(v) => {
            println!("{step}: ok {}", show(&v));
            Some(v)
        }
        Err(e) => {
            match &e {
                httpapi::Error::Api(api) => {
                    println!("{step}: error {:?}: {}", api.code, api.message)
                }
                other => println!("{step}: error {other}"),
            }
            None
        }
    }
}

fn outcome<T: std::fmt::Debug>(step: &str, result: httpapi::Result<T>) -> Option<T> {
    report(step, result, |v| format!("{v:?}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("--socket") {
        usage();
    }
    let socket = PathBuf::from(args.next().unwrap_or_else(|| usage()));
    let steps: Vec<String> = args.collect();
    let session = match Session::connect(&socket).await {
        Ok(s) => s,
        Err(e) => {
            println!("connect: error {e}");
            std::process::exit(1);
        }
    };
    let mut queue: Option<Queue> = None;
    let mut kept: Vec<Queue> = Vec::new();
    let mut steps = steps.into_iter();
    while let Some(step) = steps.next() {
        let mut value = || steps.next().unwrap_or_else(|| usage());
        match step.as_str() {
            "create" => {
                let name = value();
                let made = report("create", session.create_queue(&name).await, |_| {
                    name.clone()
                });
                kept.extend(std::mem::replace(&mut queue, made));
            }
            "open" => {
                let name = value();
                let opened = report("open", session.open_queue(&name).await, |_| name.clone());
                kept.extend(std::mem::replace(&mut queue, opened));
            }
            "stop" | "start" => {
                let Some(q) = &queue else { usage() };
                outcome(&step, q.set_stopped(step == "stop").await);
            }
            "flush" => {
                let prefix = value();
                let Some(q) = &queue else { usage() };
                outcome("flush", q.flush_cache(&prefix).await);
            }
            "url" => {
                let prefix = value();
                let Some(q) = &queue else { usage() };
                outcome("url", q.add_url(&prefix, 0).await);
            }
            "many" => {
                let n: usize = value().parse().unwrap_or_else(|_| usage());
                let mut made = 0;
                for i in 0..n {
                    match session.create_queue(&format!("probe-{i}")).await {
                        Ok(q) => {
                            kept.push(q);
                            made += 1;
                        }
                        Err(e) => {
                            outcome::<()>(&format!("many (after {made})"), Err(e));
                            break;
                        }
                    }
                }
                if made == n {
                    println!("many: ok {made}");
                }
            }
            "sessions" => {
                let n: usize = value().parse().unwrap_or_else(|_| usage());
                let mut sessions = Vec::new();
                for _ in 0..n {
                    match Session::connect(&socket).await {
                        Ok(s) => sessions.push(s),
                        Err(e) => {
                            outcome::<()>(&format!("sessions (after {})", sessions.len()), Err(e));
                            break;
                        }
                    }
                }
                if sessions.len() == n {
                    println!("sessions: ok {n}");
                }
            }
            "hold" => {
                println!("hold: ok");
                let mut rest = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut rest);
            }
            _ => usage(),
        }
    }
    drop(kept);
    drop(queue);
}
