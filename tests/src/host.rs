//! [`TestHost`]: a temporary directory holding a fake `/etc` (passwd, group, shadow, pam.d),
//! home directories with `authorized_keys`, a client key, and the mount namespace that puts
//! it all in place for sshd, login and pamtester.
//!
//! Layout of [`TestHost::dir`]:
//! ```text
//! etc/passwd etc/group etc/shadow   bind-mounted over /etc/{passwd,group,shadow}
//! etc/pam.d/                        bind-mounted over /etc/pam.d
//! home/<user>/.ssh/authorized_keys  the client key, owned by the user (StrictModes)
//! client/id_ed25519                 the client key (root's, mode 0600)
//! logs/{wtmp,btmp,lastlog,...}      empty stand-ins bound over the host's login records
//! sshd-<n>/                         one directory per sshd started (config, keys, log)
//! table                             suggested path for a hosthog table file (not created)
//! ```

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;

use crate::accounts::{GroupSpec, TestUser, UserSpec, default_users};
use crate::accounts::{group_file, passwd_file, shadow_file};
use crate::namespace::MountNamespace;
use crate::prereq::{self, tools};
use crate::process::{COMMAND_TIMEOUT, Captured, run};

/// The PAM stack installed as `other`: anything the test did not configure is refused.
const OTHER_STACK: &str = "\
auth     required pam_warn.so
auth     required pam_deny.so
account  required pam_warn.so
account  required pam_deny.so
password required pam_deny.so
session  required pam_deny.so
";

/// Login records that sshd and login update when they exist; inside the namespace empty
/// files from the test directory are bound over them.
const LOGIN_RECORDS: [&str; 5] = [
    "/run/utmp",
    "/var/log/wtmp",
    "/var/log/btmp",
    "/var/log/lastlog",
    "/var/log/faillog",
];

/// Builds a [`TestHost`].
#[derive(Debug, Clone)]
pub struct TestHostBuilder {
    users: Vec<UserSpec>,
    groups: Vec<GroupSpec>,
    pam_services: Vec<(String, String)>,
}

impl Default for TestHostBuilder {
    fn default() -> Self {
        Self {
            users: default_users(),
            groups: Vec::new(),
            pam_services: Vec::new(),
        }
    }
}

impl TestHostBuilder {
    /// Adds (or replaces, by name) an account. root, alice, bob and carol exist by default.
    pub fn user(mut self, name: &str, uid: u32, password: &str) -> Self {
        self.users.retain(|u| u.name != name);
        self.users.push(UserSpec::new(name, uid, password));
        self
    }

    /// Adds a supplementary group.
    pub fn group(mut self, name: &str, gid: u32, members: &[&str]) -> Self {
        self.groups.push(GroupSpec {
            name: name.to_owned(),
            gid,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        });
        self
    }

    /// Installs `text` as `/etc/pam.d/<service>` (e.g. `sshd`, `login`). Can also be done
    /// later with [`TestHost::set_pam_service`], once the test directory's path is known.
    pub fn pam_service(mut self, service: &str, text: &str) -> Self {
        self.pam_services
            .push((service.to_owned(), text.to_owned()));
        self
    }

    /// Creates the test directory and everything in it. Fails the test if the machine
    /// lacks root or a required tool.
    pub fn build(self) -> TestHost {
        prereq::require_e2e_environment();
        let dir = tempfile::Builder::new()
            .prefix("hosthog-e2e-")
            .tempdir()
            .expect("create the test directory");
        let root = dir.path().to_path_buf();
        // Users must be able to reach their homes (sshd reads authorized_keys as the user).
        set_mode(&root, 0o755);
        for sub in ["etc", "etc/pam.d", "home", "logs"] {
            mkdir(&root.join(sub), 0o755);
        }
        mkdir(&root.join("client"), 0o700);

        let client_key = root.join("client/id_ed25519");
        ssh_keygen(&client_key, "hosthog-test-client");
        let public_key = fs::read_to_string(client_key.with_extension("pub"))
            .expect("read the client public key");

        let users: Vec<TestUser> = self
            .users
            .iter()
            .map(|spec| make_user(&root, spec, &public_key))
            .collect();

        write(&root.join("etc/passwd"), &passwd_file(&users), 0o644);
        write(
            &root.join("etc/group"),
            &group_file(&users, &self.groups),
            0o644,
        );
        write(&root.join("etc/shadow"), &shadow_file(&users), 0o640);
        write(&root.join("etc/pam.d/other"), OTHER_STACK, 0o644);
        for record in LOGIN_RECORDS {
            make_login_record(&root, record);
        }

        let host = TestHost {
            dir,
            users,
            client_key,
            sshd_count: AtomicU32::new(0),
        };
        for (service, text) in &self.pam_services {
            host.set_pam_service(service, text);
        }
        host
    }
}

/// A fake host: test accounts, PAM stacks and keys in a temporary directory, removed when
/// this value is dropped (after every sshd and console that borrows it has been stopped).
#[derive(Debug)]
pub struct TestHost {
    dir: TempDir,
    users: Vec<TestUser>,
    client_key: PathBuf,
    sshd_count: AtomicU32,
}

impl TestHost {
    /// Default accounts (root, alice, bob, carol) and no PAM services but the deny-all
    /// `other`.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts from the default accounts.
    pub fn builder() -> TestHostBuilder {
        TestHostBuilder::default()
    }

    /// The test directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Suggested location of a hosthog table file (inside the test directory, owned by
    /// root, in a directory that is not group/world writable). Not created.
    pub fn table_path(&self) -> PathBuf {
        self.dir().join("table")
    }

    /// The private `/etc/pam.d`.
    pub fn pam_dir(&self) -> PathBuf {
        self.dir().join("etc/pam.d")
    }

    /// Writes `/etc/pam.d/<service>` as seen inside the namespace. PAM reads its
    /// configuration at every `pam_start`, so this takes effect for the next login, even
    /// with sshd already running.
    pub fn set_pam_service(&self, service: &str, text: &str) {
        assert!(
            !service.is_empty() && !service.contains('/'),
            "bad PAM service name {service:?}"
        );
        write(&self.pam_dir().join(service), text, 0o644);
    }

    /// The test accounts, root first.
    pub fn users(&self) -> &[TestUser] {
        &self.users
    }

    /// The account called `name`.
    pub fn user(&self, name: &str) -> &TestUser {
        self.users
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no test user {name:?}"))
    }

    /// The private key the client uses; its public half is in every user's
    /// `authorized_keys`.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The mount namespace with the fake `/etc/{passwd,group,shadow}`, `/etc/pam.d` and
    /// empty login records bound over the host's.
    pub fn namespace(&self) -> MountNamespace {
        let etc = self.dir().join("etc");
        let mut ns = MountNamespace::new();
        ns.bind(etc.join("passwd"), "/etc/passwd")
            .bind(etc.join("group"), "/etc/group")
            .bind(etc.join("shadow"), "/etc/shadow")
            .bind(etc.join("pam.d"), "/etc/pam.d");
        for record in LOGIN_RECORDS {
            let name = Path::new(record).file_name().expect("record file name");
            ns.bind_if_present(self.dir().join("logs").join(name), record);
        }
        // A hosthogd running on this host writes a presence snapshot the
        // module would show in session summaries: hide it behind an empty
        // directory so the expected texts do not depend on the host.
        let no_presence = self.dir().join("run-hosthog");
        std::fs::create_dir_all(&no_presence).expect("create the empty /run/hosthog");
        ns.bind_if_present(no_presence, "/run/hosthog");
        ns
    }

    /// Runs `program args` inside the namespace to completion.
    pub fn run_in_namespace(&self, program: &str, args: &[&str]) -> Captured {
        run(
            self.namespace().command(program).args(args),
            None,
            COMMAND_TIMEOUT,
        )
    }

    /// Runs `pamtester -v <service> <user> <operations...>` inside the namespace, answering
    /// prompts from `input` (e.g. the password followed by a newline).
    pub fn pamtester(
        &self,
        service: &str,
        user: &str,
        operations: &[&str],
        input: Option<&str>,
    ) -> Captured {
        let mut cmd = self.namespace().command(tools::PAMTESTER);
        cmd.args(["-v", service, user]).args(operations);
        run(&mut cmd, input.map(str::as_bytes), COMMAND_TIMEOUT)
    }

    /// A fresh directory for the next sshd instance.
    pub(crate) fn next_sshd_dir(&self) -> PathBuf {
        let n = self.sshd_count.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir().join(format!("sshd-{n}"));
        mkdir(&dir, 0o700);
        dir
    }
}

impl Default for TestHost {
    fn default() -> Self {
        Self::new()
    }
}

fn make_user(root: &Path, spec: &UserSpec, public_key: &str) -> TestUser {
    let home = root.join("home").join(&spec.name);
    let ssh_dir = home.join(".ssh");
    mkdir(&home, 0o755);
    mkdir(&ssh_dir, 0o700);
    let keys = ssh_dir.join("authorized_keys");
    write(&keys, public_key, 0o600);
    for path in [&home, &ssh_dir, &keys] {
        chown(path, Some(spec.uid), Some(spec.uid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
    TestUser {
        name: spec.name.clone(),
        uid: spec.uid,
        gid: spec.uid,
        password: spec.password.clone(),
        home,
    }
}

/// An empty stand-in for the host's login record `record`, with the same mode and owner
/// (sshd refuses to write a btmp that is world-readable or not owned by root).
fn make_login_record(root: &Path, record: &str) {
    let name = Path::new(record).file_name().expect("record file name");
    let path = root.join("logs").join(name);
    match fs::metadata(record) {
        Ok(meta) => {
            write(&path, "", meta.permissions().mode() & 0o7777);
            chown(&path, Some(meta.uid()), Some(meta.gid()))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
        Err(_) => write(&path, "", 0o600),
    }
}

/// Creates an ed25519 key pair without a passphrase at `path` and `path.pub`.
pub fn ssh_keygen(path: &Path, comment: &str) {
    let path_str = path.to_str().expect("key path is UTF-8");
    run(
        Command::new(tools::SSH_KEYGEN).args([
            "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path_str,
        ]),
        None,
        COMMAND_TIMEOUT,
    )
    .assert_success("ssh-keygen");
}

pub(crate) fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    set_mode(path, mode);
}

pub(crate) fn write(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(path, mode);
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}
