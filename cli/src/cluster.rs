//! Talking to the API server: the client, and errors people can act on. Owns the
//! kubeconfig rules and how a refused request is worded; must not know what any
//! command reads or writes.

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config::KubeArgs;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot find a cluster: pass --kubeconfig, set KUBECONFIG, or run in a pod")]
    Infer(#[source] kube::config::InferConfigError),
    #[error("cannot use the kubeconfig")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("cannot create a client for the API server")]
    Client(#[source] kube::Error),
    /// The API server answered with a refusal; its own words are in `message`.
    #[error("{action}: {message} (HTTP {code})")]
    Api {
        action: String,
        code: u16,
        message: String,
    },
    #[error("{action}")]
    Transport {
        action: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The HTTP status the API server answered with, if it answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Wraps a failed request as `action` (e.g. "cannot list ConfigMaps in x").
pub fn failed(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    move |e| {
        let action = action.into();
        match e {
            kube::Error::Api(status) => Error::Api {
                action,
                code: status.code,
                message: if status.message.is_empty() {
                    status.reason.clone()
                } else {
                    status.message.clone()
                },
            },
            source => Error::Transport { action, source },
        }
    }
}

/// A client for the chosen kubeconfig and context, or inferred like kubectl does.
pub async fn connect(args: &KubeArgs) -> Result<Client, Error> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(Error::Kubeconfig)?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(Error::Kubeconfig)?,
        (None, None) => kube::Config::infer().await.map_err(Error::Infer)?,
    };
    Client::try_from(config).map_err(Error::Client)
}
