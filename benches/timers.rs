//! Scheduled timers at scale, through the public API: the cost per arm, cancel and fire
//! with 100,000 timers armed (`cargo bench --bench timers`). Prints figures; not a
//! criterion bench, because firing needs the loop (`service`) and real deadlines.
//!
//! Each round: arm 100,000 closures due 1..=1000 ms out (spread, as connections' timers
//! are), then with those armed arm and cancel another 100,000 (the heap at 100,000-200,000
//! entries), then let the first 100,000 come due and fire them all in `service` calls.
//! The median of 5 rounds is printed.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};
use wsreactor::{Close, Context, Protocol, Reason, Wsi};

const N: usize = 100_000;

#[derive(Default)]
struct P;

impl Protocol for P {
    type Session = ();
    fn callback(&mut self, _: &mut Wsi<'_>, _: &mut (), _: Reason<'_>) -> Result<(), Close> {
        Ok(())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut ctx = Context::builder().no_listen().protocol("p", P).build().unwrap();
    let (mut arm, mut arm_cancel, mut cancel, mut fire) = (vec![], vec![], vec![], vec![]);
    for _ in 0..5 {
        let fired = Rc::new(Cell::new(0usize));
        let t = Instant::now();
        for i in 0..N {
            let f = fired.clone();
            ctx.schedule(Duration::from_millis(1 + (i * 7919 % 1000) as u64), move |_| {
                f.set(f.get() + 1)
            });
        }
        arm.push(t.elapsed().as_nanos() as f64 / N as f64);
        let mut handles = Vec::with_capacity(N);
        let t = Instant::now();
        for i in 0..N {
            handles.push(ctx.schedule(Duration::from_secs(60 + (i % 600) as u64), |_| {}));
        }
        arm_cancel.push(t.elapsed().as_nanos() as f64 / N as f64);
        let t = Instant::now();
        for h in handles {
            assert!(ctx.cancel_timer(h));
        }
        cancel.push(t.elapsed().as_nanos() as f64 / N as f64);
        std::thread::sleep(Duration::from_millis(1100));
        let t = Instant::now();
        while fired.get() < N {
            ctx.service(Duration::ZERO).unwrap();
        }
        fire.push(t.elapsed().as_nanos() as f64 / N as f64);
    }
    println!("timers, {N} armed (median of 5 rounds, ns per operation):");
    println!(
        "  arm (closure, heap growing 0 -> {N})        {:7.1}",
        median(arm)
    );
    println!(
        "  arm with {N} armed (heap {N} -> {})    {:7.1}",
        2 * N,
        median(arm_cancel)
    );
    println!(
        "  cancel with {} armed                      {:7.1}",
        2 * N,
        median(cancel)
    );
    println!("  fire (due, popped, closure run), {N}      {:7.1}", median(fire));
}
