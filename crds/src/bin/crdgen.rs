//! Writes the CRD YAML generated from the Rust types into `crds/generated/`, or checks
//! that the committed files match (`--check`, which the tests also do).

use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let dir = crds::generated::dir();
    let rendered = match crds::generated::render_all() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot render CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut drift = 0;
    for (file, yaml) in rendered {
        let path = dir.join(&file);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                eprintln!(
                    "{} is out of date; run `cargo run -p crds --bin crdgen`",
                    path.display()
                );
                drift += 1;
            }
        } else if let Err(e) = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, yaml))
        {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if drift > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
