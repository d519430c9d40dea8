//! A real kube-apiserver (v1.20.2, built by `scripts/build-kube.sh`) with etcd, on
//! loopback with free ports, started per test and stopped when dropped.

use crate::process::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

pub struct ApiServer {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    /// etcd first, then the API server (which `stop_api`/`restart_api` replace).
    children: Vec<Child>,
    api_args: Vec<String>,
    /// kube-controller-manager, when a test needs garbage collection.
    controller_manager: Option<Child>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for c in self
            .controller_manager
            .iter_mut()
            .chain(self.children.iter_mut().rev())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn apiserver_bin() -> PathBuf {
    kube_bin("OCTOPUS_KUBE_APISERVER", "kube-apiserver")
}

/// A control-plane binary: `$var` if set, else the one `scripts/build-kube.sh` cached.
fn kube_bin(var: &str, name: &str) -> PathBuf {
    let bin = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::cache_home().join("kube/bin").join(name));
    assert!(
        bin.exists(),
        "{} not found; run scripts/build-kube.sh (scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl ApiServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        let d = d.as_path();
        let pki = d.join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        openssl(
            &pki,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "3650",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
            ],
        );
        openssl(
            &pki,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=kube-apiserver",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(
            pki.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            &pki,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "3650",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.crt",
            ],
        );
        openssl(&pki, &["genrsa", "-out", "sa.key", "2048"]);
        openssl(&pki, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        std::fs::write(pki.join("tokens.csv"), "test-admin-token,admin,uid-admin,system:masters\ntest-brain-token,octopus-brain,uid-brain\ntest-limb-token,octopus-limb,uid-limb\n").unwrap();

        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let log = |name: &str| Stdio::from(std::fs::File::create(d.join(name)).unwrap());
        let etcd = Command::new("etcd")
            .args([
                "--name",
                "t",
                "--data-dir",
                &d.join("etcd").display().to_string(),
            ])
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{etcd_port}"),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("t=http://127.0.0.1:{peer_port}"),
                "--listen-metrics-urls",
                "",
            ])
            .stdout(log("etcd.log"))
            .stderr(log("etcd.err"))
            .spawn()
            .expect("etcd (scripts/build-kube.sh installs it)");
        let mut server = ApiServer {
            kubeconfig: d.join("kubeconfig"),
            children: vec![etcd],
            api_args: Vec::new(),
            controller_manager: None,
            dir,
        };
        let p = |f: &str| pki.join(f).display().to_string();
        let mut cmd = Command::new(apiserver_bin());
        cmd.args(["--etcd-servers", &format!("http://127.0.0.1:{etcd_port}")])
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
            ])
            .args(["--secure-port", &api_port.to_string()])
            .args([
                "--tls-cert-file",
                &p("server.crt"),
                "--tls-private-key-file",
                &p("server.key"),
            ])
            .args(["--client-ca-file", &p("ca.crt")])
            .args(["--service-account-issuer", "https://kubernetes.default.svc"])
            .args([
                "--service-account-key-file",
                &p("sa.pub"),
                "--service-account-signing-key-file",
                &p("sa.key"),
            ])
            .args([
                "--token-auth-file",
                &p("tokens.csv"),
                "--authorization-mode",
                "RBAC",
            ])
            .args([
                "--service-cluster-ip-range",
                "10.96.0.0/24",
                "--endpoint-reconciler-type",
                "none",
            ])
            .stdout(log("apiserver.log"))
            .stderr(log("apiserver.err"));
        server.api_args = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let api = cmd.spawn().expect("kube-apiserver");
        server.children.push(api);
        std::fs::write(
            &server.kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: t, cluster: {{server: \"https://127.0.0.1:{api_port}\", certificate-authority: \"{}\"}}}}]\nusers: [{{name: admin, user: {{token: test-admin-token}}}}]\ncontexts: [{{name: t, context: {{cluster: t, user: admin, namespace: default}}}}]\ncurrent-context: t\n",
                p("ca.crt")
            ),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(c) = server.try_client().await
                && c.apiserver_version().await.is_ok()
                && kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(c.clone())
                    .get_opt("default")
                    .await
                    .ok()
                    .flatten()
                    .is_some()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready: {}",
                std::fs::read_to_string(server.dir.path().join("apiserver.err"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    /// A kubeconfig for the token user `octopus-<component>` (brain or limb), who has no
    /// rights until bound.
    pub fn user_kubeconfig(&self, component: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig)
            .unwrap()
            .replace("test-admin-token", &format!("test-{component}-token"));
        let path = self.dir.path().join(format!("kubeconfig-{component}"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Applies the Namespace, roles and bindings of a manifest in `deploy/`, with every
    /// binding's subject swapped for the token user `user` (service-account tokens need
    /// a controller manager, which these tests do not run).
    pub async fn apply_rbac(&self, manifest: &Path, user: &str) {
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
        use kube::api::{Api, Patch, PatchParams};
        let client = self.client().await;
        let text = std::fs::read_to_string(manifest).unwrap();
        let subjects = serde_json::json!([{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]);
        let pp = PatchParams::apply("test").force();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let ns = v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            if v["metadata"]["namespace"].is_string() {
                // The manifests leave the namespace to deploy/namespace.yaml (or Helm).
                let o: k8s_openapi::api::core::v1::Namespace =
                    serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
                Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                    .patch(&ns, &pp, &Patch::Apply(&o))
                    .await
                    .unwrap();
            }
            if v["kind"].as_str().is_some_and(|k| k.ends_with("Binding")) {
                v["subjects"] = subjects.clone();
            }
            match v["kind"].as_str().unwrap_or_default() {
                "Namespace" => {
                    let o: k8s_openapi::api::core::v1::Namespace =
                        serde_json::from_value(v).unwrap();
                    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&o))
                        .await
                        .unwrap();
                }
                "ClusterRole" => {
                    let o: ClusterRole = serde_json::from_value(v).unwrap();
                    Api::<ClusterRole>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&o))
                        .await
                        .unwrap();
                }
                "ClusterRoleBinding" => {
                    let o: ClusterRoleBinding = serde_json::from_value(v).unwrap();
                    Api::<ClusterRoleBinding>::all(client.clone())
                        .patch(&name, &pp, &Patch::Apply(&o))
                        .await
                        .unwrap();
                }
                "Role" => {
                    let o: Role = serde_json::from_value(v).unwrap();
                    Api::<Role>::namespaced(client.clone(), &ns)
                        .patch(&name, &pp, &Patch::Apply(&o))
                        .await
                        .unwrap();
                }
                "RoleBinding" => {
                    let o: RoleBinding = serde_json::from_value(v).unwrap();
                    Api::<RoleBinding>::namespaced(client.clone(), &ns)
                        .patch(&name, &pp, &Patch::Apply(&o))
                        .await
                        .unwrap();
                }
                _ => {}
            }
        }
    }

    /// Starts kube-controller-manager with the garbage collector, which deletes objects
    /// whose owner is gone (the API server alone never does).
    pub fn start_controller_manager(&mut self) {
        let log = Stdio::from(std::fs::File::create(self.dir.path().join("kcm.log")).unwrap());
        let kcm = Command::new(kube_bin(
            "OCTOPUS_KUBE_CONTROLLER_MANAGER",
            "kube-controller-manager",
        ))
        .args(["--kubeconfig", &self.kubeconfig.display().to_string()])
        .args(["--controllers", "garbagecollector,namespace"])
        .args(["--leader-elect=false", "--bind-address", "127.0.0.1"])
        .args(["--secure-port", "0", "--port", "0"])
        .arg("--use-service-account-credentials=false")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("kube-controller-manager");
        self.controller_manager = Some(kcm);
    }

    /// Stops the API server (etcd keeps the data), as an outage would.
    pub fn stop_api(&mut self) {
        if let Some(mut api) = self.children.pop() {
            let _ = api.kill();
            let _ = api.wait();
        }
    }

    /// Starts the API server again on the same port and data.
    pub async fn restart_api(&mut self) {
        let log = |name: &str| {
            Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(self.dir.path().join(name))
                    .unwrap(),
            )
        };
        let api = Command::new(apiserver_bin())
            .args(&self.api_args)
            .stdout(log("apiserver.log"))
            .stderr(log("apiserver.err"))
            .spawn()
            .expect("kube-apiserver");
        self.children.push(api);
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.client().await.apiserver_version().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "kube-apiserver did not come back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn try_client(&self) -> Result<Client, String> {
        let kc = Kubeconfig::read_from(&self.kubeconfig).map_err(|e| e.to_string())?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        Client::try_from(cfg).map_err(|e| e.to_string())
    }

    pub async fn client(&self) -> Client {
        self.try_client().await.unwrap()
    }
}

/// Applies, server-side as `manager`, every ConfigMap of the multi-document `yaml` (what
/// `octopus push` renders for an adaptor) into `namespace`.
pub async fn apply_config_maps(client: &Client, namespace: &str, yaml: &str, manager: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let cm: ConfigMap = serde::Deserialize::deserialize(doc).unwrap();
        let name = cm.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&cm),
        )
        .await
        .unwrap();
    }
}

/// Applies `crds` and waits until the API server has established (serves) each one.
pub async fn install_crds(
    client: &Client,
    crds: impl IntoIterator<Item = CustomResourceDefinition>,
) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let established = api
                .get(&name)
                .await
                .ok()
                .and_then(|c| c.status)
                .is_some_and(|s| {
                    s.conditions
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the CRD {name} was not established in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Registers the ValidatingWebhookConfiguration deploy/brain.yaml ships, pointed by URL at
/// a brain on loopback `port` (a test cannot route to a Service).
pub async fn register_brain_webhook(client: &Client, port: u16) {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
    let text = std::fs::read_to_string(crate::paths::repo_file("deploy/brain.yaml"))
        .expect("deploy/brain.yaml is readable");
    let mut cfg: serde_json::Value = serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).ok())
        .find(|v| v["kind"] == "ValidatingWebhookConfiguration")
        .expect("deploy/brain.yaml ships the webhook configuration");
    for w in cfg["webhooks"].as_array_mut().into_iter().flatten() {
        w["clientConfig"] = serde_json::json!({
            "url": format!("https://127.0.0.1:{port}/validate/devicelinks")
        });
    }
    let cfg: ValidatingWebhookConfiguration =
        serde_json::from_value(cfg).expect("a webhook configuration");
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&kube::api::PostParams::default(), &cfg)
        .await
        .expect("the webhook configuration is created");
}

/// Two ServiceAccounts in `default` and a token for each: `viewer`, bound to `list
/// devicelinks` (what the dashboards' token mode asks), and `nobody`, with no rights.
pub async fn devicelink_viewer_tokens(client: &Client) -> (String, String) {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use kube::api::PostParams;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    for name in ["viewer", "nobody"] {
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .expect("a ServiceAccount");
        accounts
            .create(&PostParams::default(), &sa)
            .await
            .expect("the ServiceAccount is created");
    }
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "devicelink-viewer"},
        "rules": [{"apiGroups": ["edge.cattle.io"], "resources": ["devicelinks"], "verbs": ["list"]}],
    }))
    .expect("a ClusterRole");
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("the ClusterRole is created");
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "devicelink-viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "devicelink-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": "default"}],
    }))
    .expect("a ClusterRoleBinding");
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("the ClusterRoleBinding is created");
    let mut tokens = Vec::new();
    for name in ["viewer", "nobody"] {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .expect("a token is issued");
        tokens.push(issued.status.map(|s| s.token).unwrap_or_default());
    }
    let nobody = tokens.pop().unwrap_or_default();
    let viewer = tokens.pop().unwrap_or_default();
    (viewer, nobody)
}
