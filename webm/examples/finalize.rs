//! Finalizes one file (WebM or MP4): `cargo run -p livekeep-webm --example finalize -- in.webm out.webm`.

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: finalize <in> <out>");
        return ExitCode::from(2);
    };
    let result = File::open(input)
        .and_then(|input| Ok((input, BufWriter::new(File::create(output)?))))
        .map_err(livekeep_webm::Error::from)
        .and_then(|(input, output)| livekeep_webm::finalize(input, output));
    match result {
        Ok(done) => {
            println!(
                "{:?} {:?}: duration {:.3} s, {} seek points, {} tail bytes dropped",
                done.container,
                done.path,
                done.duration_secs,
                done.cue_points,
                done.dropped_tail_bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{input}: {e}");
            ExitCode::FAILURE
        }
    }
}
