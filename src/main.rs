//! The `ecrbuild` binary: parse flags, run the pipeline, map the outcome to an exit code.

use std::io::Write;
use std::process::ExitCode as ProcessExit;

use clap::Parser;
use ecrbuild::ci::LocalGit;
use ecrbuild::cli::{BuildArgs, Cli, Command, ContextArgs, ExportArgs, OutputFormat, ServicesArgs};
use ecrbuild::config::{self, ServicesFile};
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
        Some(Command::Services(args)) => list_services(&args),
        Some(Command::Plan(args)) => plan_services(args.build),
        None => build(cli.build),
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

/// The default command: every service of ecrbuild.toml, else the single image.
fn build(args: BuildArgs) -> Result<(), Error> {
    if args.output == OutputFormat::GithubMatrix {
        return Err(Error::usage(
            "--output github-matrix",
            "is the output of `ecrbuild plan`; a run prints text or json",
        ));
    }
    match services_file(&args)? {
        Some(file) => services(args, &file, Services::Run),
        None => run(args, Run::Build),
    }
}

fn plan_services(args: BuildArgs) -> Result<(), Error> {
    match services_file(&args)? {
        Some(file) => services(args, &file, Services::Plan),
        None => Err(Error::usage(
            "ecrbuild plan",
            "decides for the services of an ecrbuild.toml, and none was found here or at the git top level; add one or pass --config PATH",
        )),
    }
}

/// The services file in force: none when `-f` names a single image.
fn services_file(args: &BuildArgs) -> Result<Option<ServicesFile>, Error> {
    let picks_services = args.config.is_some() || !args.services.is_empty();
    if args.dockerfile.is_some() {
        return match picks_services {
            true => Err(Error::usage(
                "-f/--file",
                "builds one image, while --config and --service pick services of ecrbuild.toml; drop one or the other",
            )),
            false => Ok(None),
        };
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Error::Internal(format!("cannot read the current directory: {e}")))?;
    match config::locate(args.config.as_deref(), &cwd)? {
        Some(path) => Ok(Some(config::load(&path)?)),
        None if !args.services.is_empty() => Err(Error::usage(
            "--service",
            "picks services of ecrbuild.toml, and none was found here or at the git top level; add one or pass --config PATH",
        )),
        None => Ok(None),
    }
}

fn list_services(args: &ServicesArgs) -> Result<(), Error> {
    let cwd = std::env::current_dir()
        .map_err(|e| Error::Internal(format!("cannot read the current directory: {e}")))?;
    let path = config::locate(args.config.as_deref(), &cwd)?.ok_or_else(|| {
        Error::usage(
            "ecrbuild services",
            "no ecrbuild.toml here or at the git top level; add one or pass --config PATH",
        )
    })?;
    let listing = config::listing(&config::load(&path)?);
    let _ = std::io::stdout().lock().write_all(listing.as_bytes());
    Ok(())
}

/// What a run over services does.
enum Services {
    Run,
    /// `ecrbuild plan`: decide, act on nothing.
    Plan,
}

fn services(args: BuildArgs, file: &ServicesFile, what: Services) -> Result<(), Error> {
    let reporter = Reporter::new(args.quiet);
    let env = Env::from_process();
    let history = History::at(&file.dir);
    let head = || history.head();
    let local_git = || local_git(&history);
    let workspace = Workspace {
        env: &env,
        head: &head,
        local_git: &local_git,
        now: std::time::SystemTime::now(),
    };
    let services = plan::resolve_services(&args, file, &workspace)?;
    let mut notes: Vec<&String> = services.iter().flat_map(|s| &s.plan.notes).collect();
    notes.dedup();
    for note in notes {
        reporter.step(note);
    }
    let options = plan::ServicesOptions::from_args(&args);
    let runtime = runtime()?;
    let text = match what {
        Services::Run => {
            let run = pipeline::run_services(services, options, &reporter);
            let summary = runtime.block_on(pipeline::until_signalled(run))?;
            let text = match args.output {
                OutputFormat::Json => format!("{}\n", summary.to_json()),
                _ => summary.to_text(),
            };
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            return pipeline::failure_of(&summary).map_or(Ok(()), Err);
        }
        Services::Plan => {
            let planned =
                runtime.block_on(pipeline::plan_services(services, options, &reporter))?;
            match args.output {
                OutputFormat::Json => format!("{}\n", planned.to_json()),
                OutputFormat::Text => planned.to_text(),
                OutputFormat::GithubMatrix => {
                    append_github_output(&env, &planned.github_matrix())?;
                    planned.to_text()
                }
            }
        }
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// Append `lines` to the file `$GITHUB_OUTPUT` names.
fn append_github_output(env: &Env, lines: &str) -> Result<(), Error> {
    let path = env.get("GITHUB_OUTPUT").ok_or_else(|| {
        Error::usage(
            "--output github-matrix",
            "GITHUB_OUTPUT is not set: run it in a GitHub Actions step, or set GITHUB_OUTPUT=FILE",
        )
    })?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::usage("GITHUB_OUTPUT", format!("cannot append to {path}: {e}")))?;
    file.write_all(lines.as_bytes())
        .map_err(|e| Error::usage("GITHUB_OUTPUT", format!("cannot append to {path}: {e}")))
}

fn run(args: BuildArgs, what: Run) -> Result<(), Error> {
    let reporter = Reporter::new(args.quiet);
    let env = Env::from_process();
    let history = History::at(&args.context);
    let head = || history.head();
    let local_git = || local_git(&history);
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
        _ => summary.to_text(),
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

/// The checkout's branch and remote, for runs outside CI: two git processes, run at once.
fn local_git(history: &History) -> LocalGit {
    std::thread::scope(|scope| {
        let branch = scope.spawn(|| history.branch());
        let remote_url = history.remote_url();
        LocalGit {
            branch: branch.join().unwrap_or(None),
            remote_url,
        }
    })
}
