//! `cloudvol cloud check`: what a person runs when credentials do not work.
//! It reads a clouds.yaml, authenticates, prints the endpoints it resolved,
//! and counts volumes and images (SCP: images only). On failure it says why,
//! with the cloud's own message, and exits non-zero.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::connector::Connector;
use super::credentials::{Auth, CloudCredentials};
use super::error::CloudError;
use super::model::{ImageQuery, VolumeQuery};
use super::transport::{CloudHttp, Service, TransportConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The clouds.yaml to read (the content of the credentials Secret's `clouds.yaml` key).
    #[arg(long, value_name = "FILE")]
    pub clouds_yaml: PathBuf,
    /// The cloud to use, a key under `clouds:` (the `cloudName` of cloudCredentialsRef).
    #[arg(long, value_name = "NAME")]
    pub cloud: String,
    /// A PEM bundle of extra trusted CAs (the Secret's `cacert` key).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
}

/// Runs the check, printing to stdout, errors to stderr.
pub fn run(args: &CheckArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    match runtime.block_on(check_files(args, &mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("cloud check failed [{}]: {e}", e.reason());
            ExitCode::FAILURE
        }
    }
}

async fn check_files(args: &CheckArgs, out: &mut dyn Write) -> Result<(), CloudError> {
    let yaml = std::fs::read(&args.clouds_yaml).map_err(|e| {
        CloudError::config(format!("cannot read {}: {e}", args.clouds_yaml.display()))
    })?;
    let cacert = match &args.cacert {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| CloudError::config(format!("cannot read {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let creds = CloudCredentials::from_clouds_yaml(&yaml, &args.cloud, cacert.as_deref())?;
    let connector = Connector::new(CloudHttp::new(TransportConfig::default())?);
    check(&connector, &creds, out).await
}

/// Authenticates, resolves endpoints and counts resources, writing each
/// finding as soon as it is known (so a failure shows how far it got).
pub async fn check(
    connector: &Connector,
    creds: &CloudCredentials,
    out: &mut dyn Write,
) -> Result<(), CloudError> {
    let mut say = |line: String| {
        let _ = writeln!(out, "{line}");
    };
    say(format!(
        "cloud:       {} (region {}, interface {}{})",
        creds.cloud_name,
        creds.region_name.as_deref().unwrap_or("(any)"),
        creds.interface.as_str(),
        if creds.verify {
            ""
        } else {
            ", TLS verification OFF"
        }
    ));
    say(format!(
        "auth:        auth_type {}",
        creds.auth_type_description()
    ));
    let session = connector.session(creds)?;
    match &creds.auth {
        Auth::Scp(scp) => say(format!(
            "account:     {} (access key {}; requests are signed, no token)",
            scp.account_id, scp.access_key
        )),
        _ => {
            let token = session.token().await?;
            say(format!(
                "project:     {} (token expires {})",
                token.project_id.as_deref().unwrap_or("(unknown)"),
                token
                    .expires_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "(not said)".to_string())
            ));
        }
    }

    let block_storage = match &creds.auth {
        Auth::Scp(_) => None,
        _ => Some(connector.block_storage(creds)?),
    };
    let image = connector.image(creds)?;
    say("endpoints:".to_string());
    if block_storage.is_some() {
        let url = session.endpoint(Service::BlockStorage).await?;
        say(format!("  block-storage  {url}"));
    } else {
        say("  block-storage  (not offered for SCP)".to_string());
    }
    say(format!("  image          {}", image.endpoint().await?));

    if let Some(bs) = &block_storage {
        let volumes = bs.list_volumes(&VolumeQuery::default()).await?;
        say(format!("volumes:     {}", volumes.len()));
    }
    let images = image.list_images(&ImageQuery::default()).await?;
    say(format!("images:      {}", images.len()));
    say("OK: the credentials work.".to_string());
    Ok(())
}
