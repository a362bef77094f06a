//! The `ecrbuild` binary: parse flags, run the pipeline, map the outcome to an exit code.

use std::io::Write;
use std::process::ExitCode as ProcessExit;

use clap::Parser;
use ecrbuild::ci::LocalGit;
use ecrbuild::cli::{BuildArgs, Cli, Command, ContextArgs, ExportArgs, OutputFormat};
use ecrbuild::context::BuildContext;
use ecrbuild::env::Env;
use ecrbuild::git::History;
use ecrbuild::plan::{self, Workspace};
use ecrbuild::report::Reporter;
use ecrbuild::{pipeline, Error};

fn main() -> ProcessExit {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();

    let outcome = match cli.command {
        Some(Command::Context(args)) => list_context(&args),
        Some(Command::Index(args)) => run(args.publishing(), Run::Index),
        Some(Command::Export(args)) => export(&args),
        None => run(cli.build, Run::Build),
    };
    match outcome {
        Ok(()) => ProcessExit::SUCCESS,
        Err(error) => {
            eprintln!("ecrbuild: error: {error}");
            ProcessExit::from(error.exit_code().code())
        }
    }
}

/// `RUST_LOG` (default `warn`), with the crates that see credentials capped at `info`: at `debug` and
/// `trace` they print request headers and response bodies, which hold the registry password and the ECR
/// token. No log level may show a secret.
fn log_filter() -> tracing_subscriber::EnvFilter {
    const SEES_SECRETS: [&str; 14] = [
        "aws_smithy_runtime",
        "aws_smithy_runtime_api",
        "aws_smithy_http_client",
        "aws_smithy_types",
        "aws_sdk_ecr",
        "aws_sdk_s3",
        "aws_config",
        "bollard",
        "hyper",
        "hyper_util",
        "h2",
        "reqwest",
        "oci_client",
        "rustls",
    ];
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    for target in SEES_SECRETS {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// What a run does with its plan.
enum Run {
    /// Build and push (the default command).
    Build,
    /// `ecrbuild index`: join the platform images into an index; no daemon.
    Index,
}

fn run(args: BuildArgs, what: Run) -> Result<(), Error> {
    let reporter = Reporter::new(args.quiet);
    let env = Env::from_process();
    let history = History::at(&args.context);
    let head = || history.head();
    let local_git = || LocalGit {
        branch: history.branch(),
        remote_url: history.remote_url(),
    };
    let plan = plan::resolve(
        &args,
        &Workspace {
            env: &env,
            head: &head,
            local_git: &local_git,
            now: std::time::SystemTime::now(),
        },
    )?;
    for note in &plan.notes {
        reporter.step(note);
    }
    let output = plan.output;
    let runtime = runtime()?;
    let summary = match what {
        Run::Build => runtime.block_on(pipeline::run_until_signalled(plan, &reporter))?,
        Run::Index => runtime.block_on(pipeline::run_index(plan, &reporter))?,
    };
    let text = match output {
        OutputFormat::Json => format!("{}\n", summary.to_json()),
        OutputFormat::Text => summary.to_text(),
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

fn export(args: &ExportArgs) -> Result<(), Error> {
    let plan = ecrbuild::export::plan::resolve(args, &Env::from_process())?;
    let reporter = Reporter::new(plan.quiet);
    runtime()?.block_on(ecrbuild::export::run(plan, &reporter))?;
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))
}

fn list_context(args: &ContextArgs) -> Result<(), Error> {
    let context = BuildContext::scan(&args.context, &args.dockerfile)?;
    let mut out = std::io::stdout().lock();
    if args.list {
        for path in context.paths() {
            let _ = writeln!(out, "{}", path.display());
        }
    } else {
        let _ = writeln!(
            out,
            "{} entries, {} bytes of file data, Dockerfile sent as {}",
            context.entry_count(),
            context.content_bytes(),
            context.dockerfile_in_tar()
        );
    }
    Ok(())
}
