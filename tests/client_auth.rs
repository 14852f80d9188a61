//! Auth calls and the auth token flow of the client against real etcd 3.5.16 (parity doc §1.3
//! auth field names, §2.2 retry classes, §2.4 token flow).

mod support;

use std::time::Duration;

use etcd_v3::auth::{Permission, PermissionKind};
use etcd_v3::kv::{GetOptions, PutOptions};
use etcd_v3::proto::etcdserverpb::{RangeRequest, kv_client::KvClient};
use etcd_v3::{Client, ConnectOptions, Error, ServerError};
use support::etcd::EtcdCluster;

const ROOT_PW: &str = "root-pw";

fn opts() -> ConnectOptions {
    ConnectOptions::new().with_request_timeout(Duration::from_secs(20))
}

async fn anonymous(cluster: &EtcdCluster) -> Client {
    Client::connect(cluster.endpoints(), opts())
        .await
        .expect("connect anonymously")
}

async fn as_user(cluster: &EtcdCluster, user: &str, pw: &str) -> Result<Client, Error> {
    Client::connect(cluster.endpoints(), opts().with_user(user, pw)).await
}

/// Creates `root` with the `root` role on a fresh cluster (auth still off) and returns an
/// anonymous admin client.
async fn with_root(cluster: &EtcdCluster) -> Client {
    let c = anonymous(cluster).await;
    c.user_add("root", ROOT_PW).await.expect("user add root");
    c.user_grant_role("root", "root")
        .await
        .expect("grant root role");
    c
}

fn kind(e: &Error) -> Option<ServerError> {
    e.server_error()
}

/// A Range through the raw stub carrying `token` in the `token` metadata key.
async fn raw_get_with_token(url: &str, token: &str, key: &str) -> Result<usize, tonic::Status> {
    let mut kv = KvClient::new(
        tonic::transport::Endpoint::from_shared(url.to_string())
            .expect("endpoint")
            .connect_lazy(),
    );
    let mut req = tonic::Request::new(RangeRequest {
        key: key.to_string().into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("token", token.parse().expect("ascii token"));
    kv.range(req).await.map(|r| r.into_inner().kvs.len())
}

/// §2.4: with auth on, a client configured with a user authenticates at connect and its calls
/// succeed; a client without credentials is refused; a token of nonsense is refused as invalid.
#[tokio::test(flavor = "multi_thread")]
async fn auth_token_flow_put_succeeds_with_token_and_fails_without() {
    let cluster = EtcdCluster::single().expect("etcd");
    let admin = with_root(&cluster).await;
    admin.auth_enable().await.expect("auth enable");

    let root = as_user(&cluster, "root", ROOT_PW)
        .await
        .expect("connect as root");
    root.put("k", "v", PutOptions::new())
        .await
        .expect("put as root");
    let got = root.get("k", GetOptions::new()).await.expect("get as root");
    assert_eq!(
        got.first().map(|kv| kv.value_str().into_owned()),
        Some("v".into())
    );

    // The anonymous client (the one that enabled auth) is now refused: 3.5.16 says "user name is
    // empty" for both reads and writes without a token.
    let e = admin
        .get("k", GetOptions::new())
        .await
        .expect_err("anonymous get");
    assert_eq!(kind(&e), Some(ServerError::UserEmpty), "{e}");
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
    let e = admin
        .put("k", "x", PutOptions::new())
        .await
        .expect_err("anonymous put");
    assert_eq!(kind(&e), Some(ServerError::UserEmpty), "{e}");
    assert!(!e.is_outcome_unknown(), "{e}");

    // A token the server never issued.
    let st = raw_get_with_token(&cluster.endpoints()[0], "bogus.1", "k")
        .await
        .expect_err("bogus token");
    assert_eq!(st.code(), tonic::Code::Unauthenticated, "{st:?}");
    assert_eq!(
        ServerError::from_message(st.message()),
        Some(ServerError::InvalidAuthToken)
    );

    // An explicitly fetched token works on the wire.
    let token = root
        .authenticate("root", ROOT_PW)
        .await
        .expect("authenticate");
    assert!(!token.is_empty());
    assert_eq!(
        raw_get_with_token(&cluster.endpoints()[0], &token, "k")
            .await
            .expect("get with fetched token"),
        1
    );
}

/// §2.4: a wrong password at connect is `AuthFailed`; so is a user that does not exist and a
/// user added without a password.
#[tokio::test(flavor = "multi_thread")]
async fn auth_wrong_password_at_connect_is_auth_failed() {
    let cluster = EtcdCluster::single().expect("etcd");
    let admin = with_root(&cluster).await;
    admin
        .user_add_no_password("cn-user")
        .await
        .expect("add no-password user");
    admin.auth_enable().await.expect("auth enable");

    for (user, pw) in [("root", "wrong"), ("nobody", "x")] {
        let e = as_user(&cluster, user, pw)
            .await
            .expect_err("connect must fail");
        assert_eq!(kind(&e), Some(ServerError::AuthFailed), "{user}: {e}");
        assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{user}: {e}");
    }
    // 3.5.16 answers a no-password user with its own message and code Unknown ("auth:
    // authentication failed, password was given for no password user"); it is recognised as
    // AuthFailed.
    let e = as_user(&cluster, "cn-user", "")
        .await
        .expect_err("no-password user cannot log in");
    assert_eq!(kind(&e), Some(ServerError::AuthFailed), "{e}");
    assert_eq!(e.code(), Some(tonic::Code::Unknown), "{e}");
    // The same through the explicit call.
    let root = as_user(&cluster, "root", ROOT_PW)
        .await
        .expect("connect as root");
    let e = root
        .authenticate("root", "nope")
        .await
        .expect_err("bad password");
    assert_eq!(kind(&e), Some(ServerError::AuthFailed), "{e}");
}

/// §2.4: without auth, credentials are accepted and unused (AuthNotEnabled is swallowed at
/// connect), while an explicit authenticate reports AuthNotEnabled.
#[tokio::test(flavor = "multi_thread")]
async fn auth_credentials_without_auth_enabled_are_ignored() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c = as_user(&cluster, "root", "whatever")
        .await
        .expect("connect with credentials while auth is off");
    c.put("k", "v", PutOptions::new()).await.expect("put");
    let e = c
        .authenticate("root", "whatever")
        .await
        .expect_err("auth off");
    assert_eq!(kind(&e), Some(ServerError::AuthNotEnabled), "{e}");
    assert_eq!(e.code(), Some(tonic::Code::FailedPrecondition), "{e}");
}

/// A user with a read-only prefix role can read inside the prefix, but not write, and not read
/// outside it; a read-write prefix role allows exactly the keys under the prefix.
#[tokio::test(flavor = "multi_thread")]
async fn auth_role_permission_read_only_and_prefix_ranges() {
    let cluster = EtcdCluster::single().expect("etcd");
    let admin = with_root(&cluster).await;
    admin
        .put("app/a", "1", PutOptions::new())
        .await
        .expect("seed");
    admin
        .put("other", "1", PutOptions::new())
        .await
        .expect("seed");

    admin.role_add("ro").await.expect("role add ro");
    admin
        .role_grant_permission("ro", Permission::prefix(PermissionKind::Read, "app/"))
        .await
        .expect("grant read app/");
    admin.user_add("reader", "r-pw").await.expect("user add");
    admin
        .user_grant_role("reader", "ro")
        .await
        .expect("grant ro");

    admin.role_add("rw").await.expect("role add rw");
    admin
        .role_grant_permission("rw", Permission::prefix(PermissionKind::ReadWrite, "app/"))
        .await
        .expect("grant rw app/");
    admin
        .role_grant_permission("rw", Permission::write("single"))
        .await
        .expect("grant write single");
    admin.user_add("writer", "w-pw").await.expect("user add");
    admin
        .user_grant_role("writer", "rw")
        .await
        .expect("grant rw");
    admin.auth_enable().await.expect("auth enable");

    let reader = as_user(&cluster, "reader", "r-pw").await.expect("reader");
    let got = reader
        .get("app/a", GetOptions::new())
        .await
        .expect("read inside prefix");
    assert_eq!(got.kvs.len(), 1);
    let got = reader
        .get("app/", GetOptions::new().with_prefix())
        .await
        .expect("prefix read of exactly the permitted range");
    assert_eq!(got.kvs.len(), 1);
    let e = reader
        .put("app/a", "2", PutOptions::new())
        .await
        .expect_err("read-only put");
    assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{e}");
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied), "{e}");
    assert!(!e.is_outcome_unknown(), "{e}");
    let e = reader
        .get("other", GetOptions::new())
        .await
        .expect_err("read outside prefix");
    assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{e}");
    // A range wider than the permission is refused as a whole.
    let e = reader
        .get("app", GetOptions::new().with_prefix())
        .await
        .expect_err("range wider than the permission");
    assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{e}");

    let writer = as_user(&cluster, "writer", "w-pw").await.expect("writer");
    for key in ["app/b", "app/deep/c", "app/\u{ff}"] {
        writer
            .put(key, "w", PutOptions::new())
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    for key in ["app", "apq", "b", "app0"] {
        let e = writer
            .put(key, "w", PutOptions::new())
            .await
            .expect_err(key);
        assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{key}: {e}");
    }
    writer
        .put("single", "w", PutOptions::new())
        .await
        .expect("write-only single key");
    let e = writer
        .get("single", GetOptions::new())
        .await
        .expect_err("write-only key read");
    assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{e}");
    let e = writer
        .put("single2", "w", PutOptions::new())
        .await
        .expect_err("single is one key");
    assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{e}");

    // Revoking the permission takes effect at once for the live client. With simple tokens the
    // server stamps a token with the current auth revision at each use, so a token from before
    // the change is not refused as AuthOldRevision: it stays valid and gets the new verdict.
    let old_token = writer.authenticate("writer", "w-pw").await.expect("token");
    admin_root(&cluster)
        .await
        .role_revoke_permission("rw", "app/", etcd_v3::kv::prefix_end(b"app/"))
        .await
        .expect("revoke app/ from rw");
    let e = writer
        .put("app/b", "w2", PutOptions::new())
        .await
        .expect_err("revoked");
    assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{e}");
    let st = raw_get_with_token(&cluster.endpoints()[0], &old_token, "app/b")
        .await
        .expect_err("token from before the auth change");
    assert_eq!(
        ServerError::from_message(st.message()),
        Some(ServerError::PermissionDenied),
        "{st:?}"
    );
    assert_eq!(st.code(), tonic::Code::PermissionDenied, "{st:?}");
}

async fn admin_root(cluster: &EtcdCluster) -> Client {
    as_user(cluster, "root", ROOT_PW)
        .await
        .expect("connect as root")
}

/// §1.3 field names: every user and role call round-trips (grant uses `user`, revoke uses
/// `name`; role get/delete use `role`; grant-permission uses `name` + `perm`; revoke-permission
/// uses `role`, `key`, `range_end`), with the server's errors for the unhappy paths.
#[tokio::test(flavor = "multi_thread")]
async fn auth_admin_user_and_role_round_trips() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c = anonymous(&cluster).await;

    c.role_add("app").await.expect("role add");
    assert!(c.role_get("app").await.expect("role get").is_empty());
    let e = c.role_add("app").await.expect_err("duplicate role");
    assert_eq!(kind(&e), Some(ServerError::RoleAlreadyExist), "{e}");
    let perms = [
        Permission::prefix(PermissionKind::ReadWrite, "app/"),
        Permission::read("cfg"),
        Permission::range(PermissionKind::Write, "x", "z"),
        Permission::from_key(PermissionKind::Read, "zz"),
    ];
    for p in &perms {
        c.role_grant_permission("app", p.clone())
            .await
            .expect("grant permission");
    }
    let mut got = c.role_get("app").await.expect("role get");
    got.sort_by(|a, b| a.key.cmp(&b.key));
    let mut want = perms.to_vec();
    want.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(got, want);
    assert_eq!(perms[0].range_end.as_ref(), b"app0");
    assert_eq!(perms[3].range_end.as_ref(), b"\0");

    // Granting again on the same key and range end replaces the kind.
    c.role_grant_permission("app", Permission::write("cfg"))
        .await
        .expect("regrant");
    let cfg: Vec<_> = c
        .role_get("app")
        .await
        .expect("role get")
        .into_iter()
        .filter(|p| p.key.as_ref() == b"cfg")
        .collect();
    assert_eq!(cfg, vec![Permission::write("cfg")]);

    c.role_revoke_permission("app", "x", "z")
        .await
        .expect("revoke range");
    let e = c
        .role_revoke_permission("app", "x", "z")
        .await
        .expect_err("revoke twice");
    assert_eq!(kind(&e), Some(ServerError::PermissionNotGranted), "{e}");
    let e = c
        .role_revoke_permission("app", "app/", "")
        .await
        .expect_err("range end must match exactly");
    assert_eq!(kind(&e), Some(ServerError::PermissionNotGranted), "{e}");
    assert_eq!(c.role_get("app").await.expect("role get").len(), 3);

    // An empty prefix is sent as ["\0", "\0") (the server refuses an empty key).
    c.role_add("everything").await.expect("role add");
    c.role_grant_permission("everything", Permission::prefix(PermissionKind::Read, ""))
        .await
        .expect("grant all keys");
    assert_eq!(
        c.role_get("everything").await.expect("role get"),
        vec![Permission::all_keys(PermissionKind::Read)]
    );
    let e = c
        .role_grant_permission("everything", Permission::read(""))
        .await
        .expect_err("empty key");
    assert_eq!(kind(&e), Some(ServerError::InvalidAuthMgmt), "{e}");

    c.user_add("alice", "pw").await.expect("user add");
    c.user_add_no_password("bob")
        .await
        .expect("user add no password");
    let e = c.user_add("alice", "pw").await.expect_err("duplicate user");
    assert_eq!(kind(&e), Some(ServerError::UserAlreadyExist), "{e}");
    assert!(c.user_get("alice").await.expect("user get").is_empty());
    c.user_grant_role("alice", "app").await.expect("grant role");
    c.user_grant_role("alice", "everything")
        .await
        .expect("grant role");
    let mut roles = c.user_get("alice").await.expect("user get");
    roles.sort();
    assert_eq!(roles, vec!["app".to_string(), "everything".to_string()]);
    let e = c
        .user_grant_role("alice", "missing")
        .await
        .expect_err("unknown role");
    assert_eq!(kind(&e), Some(ServerError::RoleNotFound), "{e}");
    let e = c
        .user_grant_role("carol", "app")
        .await
        .expect_err("unknown user");
    assert_eq!(kind(&e), Some(ServerError::UserNotFound), "{e}");

    let mut users = c.user_list().await.expect("user list");
    users.sort();
    assert_eq!(users, vec!["alice".to_string(), "bob".to_string()]);
    let mut role_names = c.role_list().await.expect("role list");
    role_names.sort();
    assert_eq!(
        role_names,
        vec!["app".to_string(), "everything".to_string()]
    );

    c.user_revoke_role("alice", "everything")
        .await
        .expect("revoke role");
    assert_eq!(
        c.user_get("alice").await.expect("user get"),
        vec!["app".to_string()]
    );
    let e = c
        .user_revoke_role("alice", "everything")
        .await
        .expect_err("revoke twice");
    assert_eq!(kind(&e), Some(ServerError::RoleNotGranted), "{e}");

    // Deleting a role takes it away from its users.
    c.role_delete("app").await.expect("role delete");
    assert!(c.user_get("alice").await.expect("user get").is_empty());
    let e = c.role_get("app").await.expect_err("deleted role");
    assert_eq!(kind(&e), Some(ServerError::RoleNotFound), "{e}");
    let e = c.role_delete("app").await.expect_err("delete twice");
    assert_eq!(kind(&e), Some(ServerError::RoleNotFound), "{e}");

    c.user_change_password("alice", "pw2")
        .await
        .expect("change password");
    c.user_delete("bob").await.expect("user delete");
    let e = c.user_get("bob").await.expect_err("deleted user");
    assert_eq!(kind(&e), Some(ServerError::UserNotFound), "{e}");
    let e = c.user_delete("bob").await.expect_err("delete twice");
    assert_eq!(kind(&e), Some(ServerError::UserNotFound), "{e}");
    assert_eq!(
        c.user_list().await.expect("user list"),
        vec!["alice".to_string()]
    );

    // The changed password is the one that authenticates once auth is on.
    c.user_add("root", ROOT_PW).await.expect("root");
    c.user_grant_role("root", "root").await.expect("root role");
    c.auth_enable().await.expect("auth enable");
    let e = as_user(&cluster, "alice", "pw")
        .await
        .expect_err("old password");
    assert_eq!(kind(&e), Some(ServerError::AuthFailed), "{e}");
    as_user(&cluster, "alice", "pw2")
        .await
        .expect("new password");
}

/// AuthStatus reports enabled true/false and a growing auth revision; enabling needs a root
/// user with the root role; only root may disable auth; afterwards anonymous calls work again.
#[tokio::test(flavor = "multi_thread")]
async fn auth_status_enable_and_disable_by_root() {
    let cluster = EtcdCluster::single().expect("etcd");
    let c = anonymous(&cluster).await;
    let before = c.auth_status().await.expect("auth status");
    assert!(!before.enabled);

    let e = c.auth_enable().await.expect_err("no root user");
    assert_eq!(kind(&e), Some(ServerError::RootUserNotExist), "{e}");
    c.user_add("root", ROOT_PW).await.expect("root");
    let e = c.auth_enable().await.expect_err("root without root role");
    assert_eq!(kind(&e), Some(ServerError::RootRoleNotExist), "{e}");
    c.user_grant_role("root", "root").await.expect("root role");
    c.user_add("alice", "a-pw").await.expect("alice");

    c.auth_enable().await.expect("auth enable");
    // 3.5.16 treats AuthStatus as an admin call once auth is on: root only.
    let e = c
        .auth_status()
        .await
        .expect_err("anonymous auth status with auth on");
    assert_eq!(kind(&e), Some(ServerError::UserEmpty), "{e}");
    let alice = as_user(&cluster, "alice", "a-pw").await.expect("alice");
    let e = alice
        .auth_status()
        .await
        .expect_err("auth status as a plain user");
    assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{e}");
    let root = admin_root(&cluster).await;
    let on = root.auth_status().await.expect("auth status as root");
    assert!(on.enabled);
    assert!(
        on.auth_revision > before.auth_revision,
        "{} then {}",
        before.auth_revision,
        on.auth_revision
    );
    // Enabling twice is accepted.
    root.auth_enable().await.expect("auth enable again");

    let e = alice.auth_disable().await.expect_err("non-root disable");
    assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{e}");
    let e = alice
        .user_add("mallory", "m")
        .await
        .expect_err("non-root user add");
    assert_eq!(kind(&e), Some(ServerError::PermissionDenied), "{e}");
    let e = c.auth_disable().await.expect_err("anonymous disable");
    assert_eq!(kind(&e), Some(ServerError::UserEmpty), "{e}");

    root.auth_disable().await.expect("root disables auth");
    let off = root.auth_status().await.expect("auth status");
    assert!(!off.enabled);
    let off = c
        .auth_status()
        .await
        .expect("anonymous auth status with auth off");
    assert!(!off.enabled);
    c.put("k", "v", PutOptions::new())
        .await
        .expect("anonymous put with auth off");
    root.put("k2", "v", PutOptions::new())
        .await
        .expect("a client holding a token works with auth off");
}

/// §2.4 refresh: with `--auth-token-ttl=2` a token left unused for 4 s is gone, yet the client's
/// next get succeeds (it re-authenticates on InvalidAuthToken); after a restart of the member,
/// which forgets simple tokens, the next get succeeds too.
#[tokio::test(flavor = "multi_thread")]
async fn auth_token_refresh_after_ttl_expiry_and_member_restart() {
    let mut cluster = EtcdCluster::builder()
        .flag("--auth-token-ttl=2")
        .start()
        .expect("etcd");
    let admin = with_root(&cluster).await;
    admin.auth_enable().await.expect("auth enable");
    let url = cluster.endpoints()[0].clone();

    let root = admin_root(&cluster).await;
    root.put("k", "v", PutOptions::new()).await.expect("put");
    let probe = root.authenticate("root", ROOT_PW).await.expect("token");
    assert_eq!(
        raw_get_with_token(&url, &probe, "k")
            .await
            .expect("fresh token"),
        1
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    // The token really expired (so the next success is a refresh, not a live token).
    let st = raw_get_with_token(&url, &probe, "k")
        .await
        .expect_err("expired token");
    assert_eq!(
        ServerError::from_message(st.message()),
        Some(ServerError::InvalidAuthToken),
        "{st:?}"
    );
    let got = root
        .get("k", GetOptions::new())
        .await
        .expect("get after ttl");
    assert_eq!(got.kvs.len(), 1);
    root.put("k", "v2", PutOptions::new())
        .await
        .expect("put after refresh");

    let probe = root.authenticate("root", ROOT_PW).await.expect("token");
    tokio::task::block_in_place(|| cluster.restart(0)).expect("restart");
    let st = raw_get_with_token(&url, &probe, "k")
        .await
        .expect_err("token forgotten by the restart");
    assert_eq!(
        ServerError::from_message(st.message()),
        Some(ServerError::InvalidAuthToken),
        "{st:?}"
    );
    let got = root
        .get("k", GetOptions::new())
        .await
        .expect("get after restart");
    assert_eq!(
        got.first().map(|kv| kv.value_str().into_owned()),
        Some("v2".into())
    );
    root.put("k", "v3", PutOptions::new())
        .await
        .expect("put after restart");
}

/// §2.4 3.5 quirk `[S]`: with auth on, a non-root user's Defragment, HashKV and Snapshot are
/// refused by etcd 3.5 with code Unknown and "auth: permission denied"; the client maps that
/// message to `PermissionDenied` all the same. Root may run them.
#[tokio::test(flavor = "multi_thread")]
async fn auth_non_root_maintenance_is_unknown_permission_denied_on_3_5() {
    let cluster = EtcdCluster::single().expect("etcd");
    let admin = with_root(&cluster).await;
    admin.role_add("rw").await.expect("role add");
    admin
        .role_grant_permission("rw", Permission::prefix(PermissionKind::ReadWrite, "m/"))
        .await
        .expect("grant");
    admin.user_add("maint", "m-pw").await.expect("user add");
    admin
        .user_grant_role("maint", "rw")
        .await
        .expect("grant role");
    admin.auth_enable().await.expect("auth enable");
    let ep = cluster.endpoints()[0].clone();
    let user = as_user(&cluster, "maint", "m-pw").await.expect("connect");
    user.put("m/k", "v", PutOptions::new())
        .await
        .expect("a permitted put");
    let checks = [
        ("defragment", user.defragment(&ep).await.err()),
        ("hash_kv", user.hash_kv(&ep, 0).await.err()),
        ("snapshot", user.snapshot(tokio::io::sink()).await.err()),
    ];
    for (what, err) in checks {
        let e = err.unwrap_or_else(|| panic!("{what} allowed for a non-root user"));
        assert_eq!(
            kind(&e),
            Some(ServerError::PermissionDenied),
            "{what}: {e:?}"
        );
        assert_eq!(e.code(), Some(tonic::Code::Unknown), "{what}: {e:?}");
    }
    let root = admin_root(&cluster).await;
    root.defragment(&ep).await.expect("root defragments");
    root.hash_kv(&ep, 0).await.expect("root hashes");
}

/// §2.4 `[S]` watch creation under an auth failure: etcd answers created + canceled with
/// "permission denied" (not a stream error); the client ends that create with `WatchCanceled`,
/// and a permitted watch on the same client's stream works.
#[tokio::test(flavor = "multi_thread")]
async fn auth_watch_create_without_permission_is_canceled_not_a_stream_error() {
    use etcd_v3::watch::WatchOptions;
    let cluster = EtcdCluster::single().expect("etcd");
    let admin = with_root(&cluster).await;
    admin.role_add("ro").await.expect("role add");
    admin
        .role_grant_permission("ro", Permission::prefix(PermissionKind::Read, "app/"))
        .await
        .expect("grant");
    admin.user_add("reader", "r-pw").await.expect("user add");
    admin
        .user_grant_role("reader", "ro")
        .await
        .expect("grant role");
    admin.auth_enable().await.expect("auth enable");
    let reader = as_user(&cluster, "reader", "r-pw").await.expect("reader");
    match reader.watch("other", WatchOptions::new()).await {
        Err(Error::WatchCanceled { reason }) => {
            assert!(reason.contains("permission denied"), "{reason}")
        }
        Err(e) => panic!("watch outside the permission: {e:?}"),
        Ok(_) => panic!("watch outside the permission was created"),
    }
    let mut w = reader
        .watch("app/", WatchOptions::new().with_prefix())
        .await
        .expect("permitted watch");
    let root = admin_root(&cluster).await;
    let rev = root
        .put("app/x", "1", PutOptions::new())
        .await
        .expect("put")
        .header
        .revision;
    let b = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("an event in time")
        .expect("open")
        .expect("ok");
    assert_eq!(b.events[0].mod_revision(), rev);
}
