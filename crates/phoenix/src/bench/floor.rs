//! `phoenix bench send-floor`: what one small write to each of many loopback TCP sockets costs on this
//! machine, with no server, no WebSocket framing and no reader. A live update to S subscribers is at
//! least S such writes, so this is the floor under `phoenix bench ws` (docs/benchmarks.md).

use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct FloorArgs {
    /// Connected socket pairs (each needs two open files: raise `ulimit -n` for thousands).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sockets: u32,
    /// Rounds of one write per socket.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,
    /// Bytes per write (a WebSocket update with one changed entry is about 160).
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(1..=16_384))]
    pub bytes: u32,
}

pub async fn run(args: FloorArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || measure(&args))
        .await
        .context("bench send-floor: the measuring thread failed")?
}

fn measure(args: &FloorArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    // The receiving ends stay open (and unread: the kernel buffers what the rounds write).
    let mut receivers = Vec::with_capacity(args.sockets as usize);
    let mut senders = Vec::with_capacity(args.sockets as usize);
    for i in 0..args.sockets {
        let receiver = TcpStream::connect(addr).with_context(|| {
            format!("cannot open socket {i} (raise the open-file limit, e.g. `ulimit -n 30000`)")
        })?;
        let (sender, _) = listener.accept().context("cannot accept a connection")?;
        sender.set_nodelay(true)?;
        receivers.push(receiver);
        senders.push(sender);
    }
    let frame = vec![b'x'; args.bytes as usize];
    let mut rounds = Vec::with_capacity(args.rounds as usize);
    for _ in 0..args.rounds {
        let started = Instant::now();
        for sender in &mut senders {
            sender.write_all(&frame).context("a write failed")?;
        }
        rounds.push(started.elapsed());
    }
    rounds.sort();
    let median = rounds[rounds.len() / 2];
    let best = rounds[0];
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(args.sockets);
    println!(
        "send floor    {} sockets, {} rounds of one {}-byte write each, one thread",
        args.sockets, args.rounds, args.bytes
    );
    println!(
        "round         median {:.1} ms ({:.2} µs per write), best {:.1} ms ({:.2} µs per write)",
        median.as_secs_f64() * 1e3,
        per(median),
        best.as_secs_f64() * 1e3,
        per(best)
    );
    drop(receivers);
    Ok(())
}
