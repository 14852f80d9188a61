//! Auth calls of the client: enabling auth, users, roles and their key-range permissions.
//!
//! The auth token itself is handled by the [`Client`]: configure a user with
//! [`ConnectOptions::with_user`](super::ConnectOptions::with_user) and the client authenticates at
//! connect and again whenever the server reports the token invalid, expired or issued before an
//! auth change.
//!
//! ```no_run
//! # async fn demo(client: etcd_v3::Client) -> etcd_v3::Result<()> {
//! use etcd_v3::auth::{Permission, PermissionKind};
//! client.user_add("root", "secret").await?;
//! client.user_grant_role("root", "root").await?;
//! client.role_add("reader").await?;
//! client.role_grant_permission("reader", Permission::prefix(PermissionKind::Read, "app/")).await?;
//! client.user_add("alice", "pw").await?;
//! client.user_grant_role("alice", "reader").await?;
//! client.auth_enable().await?;
//! # Ok(()) }
//! ```
//!
//! Retry classes (declared in the RPC table, `rpc.rs`) follow etcd's client: `UserGet`,
//! `UserList`, `RoleGet` and `RoleList` are retried like reads; every other auth call
//! (including `AuthStatus` and `Authenticate`) is sent again only when it provably never left
//! the client.

use bytes::Bytes;

use super::client::Client;
use super::error::Result;
use super::kv::{Header, prefix_end};
use super::proto::{authpb, etcdserverpb as pb};

/// Whether auth is on, and the auth store's revision (bumped by every auth change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthStatus {
    /// The response header.
    pub header: Header,
    /// Whether authentication is enabled.
    pub enabled: bool,
    /// The auth store revision; tokens issued before a change are refused with
    /// [`ServerError::AuthOldRevision`](super::ServerError::AuthOldRevision) (and refreshed by the
    /// client).
    pub auth_revision: u64,
}

/// What a [`Permission`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermissionKind {
    /// Range (get) and watch.
    Read,
    /// Put and delete.
    Write,
    /// Both.
    ReadWrite,
}

impl PermissionKind {
    fn to_proto(self) -> authpb::permission::Type {
        match self {
            PermissionKind::Read => authpb::permission::Type::Read,
            PermissionKind::Write => authpb::permission::Type::Write,
            PermissionKind::ReadWrite => authpb::permission::Type::Readwrite,
        }
    }

    fn from_proto(t: i32) -> PermissionKind {
        match authpb::permission::Type::try_from(t) {
            Ok(authpb::permission::Type::Write) => PermissionKind::Write,
            Ok(authpb::permission::Type::Readwrite) => PermissionKind::ReadWrite,
            _ => PermissionKind::Read,
        }
    }
}

/// A role's permission on one key or a key range `[key, range_end)`.
///
/// An empty `range_end` means the single key; `range_end == "\0"` means every key from `key` on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    /// What is allowed.
    pub kind: PermissionKind,
    /// The key, or the start of the range.
    pub key: Bytes,
    /// The end of the range (exclusive); empty for a single key.
    pub range_end: Bytes,
}

impl Permission {
    /// `kind` on the single key `key`.
    pub fn new(kind: PermissionKind, key: impl AsRef<[u8]>) -> Self {
        Permission {
            kind,
            key: Bytes::copy_from_slice(key.as_ref()),
            range_end: Bytes::new(),
        }
    }

    /// Read on the single key `key`.
    pub fn read(key: impl AsRef<[u8]>) -> Self {
        Self::new(PermissionKind::Read, key)
    }

    /// Write on the single key `key`.
    pub fn write(key: impl AsRef<[u8]>) -> Self {
        Self::new(PermissionKind::Write, key)
    }

    /// Read and write on the single key `key`.
    pub fn read_write(key: impl AsRef<[u8]>) -> Self {
        Self::new(PermissionKind::ReadWrite, key)
    }

    /// `kind` on every key that starts with `prefix`. An empty prefix means every key; it is
    /// sent as `["\0", "\0")`, as etcdctl does, because the server refuses an empty key.
    pub fn prefix(kind: PermissionKind, prefix: impl AsRef<[u8]>) -> Self {
        let prefix = prefix.as_ref();
        if prefix.is_empty() {
            return Self::all_keys(kind);
        }
        Permission {
            kind,
            key: Bytes::copy_from_slice(prefix),
            range_end: prefix_end(prefix),
        }
    }

    /// `kind` on the keys in `[key, range_end)`.
    pub fn range(kind: PermissionKind, key: impl AsRef<[u8]>, range_end: impl AsRef<[u8]>) -> Self {
        Permission {
            kind,
            key: Bytes::copy_from_slice(key.as_ref()),
            range_end: Bytes::copy_from_slice(range_end.as_ref()),
        }
    }

    /// `kind` on every key greater than or equal to `key` (an empty `key` means every key).
    pub fn from_key(kind: PermissionKind, key: impl AsRef<[u8]>) -> Self {
        let key = key.as_ref();
        if key.is_empty() {
            return Self::all_keys(kind);
        }
        Self::range(kind, key, b"\0")
    }

    /// `kind` on every key.
    pub fn all_keys(kind: PermissionKind) -> Self {
        Self::range(kind, b"\0", b"\0")
    }

    /// Whether this covers a range rather than one key.
    pub fn is_range(&self) -> bool {
        !self.range_end.is_empty()
    }

    /// The wire form.
    pub fn to_proto(&self) -> authpb::Permission {
        authpb::Permission {
            perm_type: self.kind.to_proto() as i32,
            key: self.key.clone(),
            range_end: self.range_end.clone(),
        }
    }
}

impl From<authpb::Permission> for Permission {
    fn from(p: authpb::Permission) -> Self {
        Permission {
            kind: PermissionKind::from_proto(p.perm_type),
            key: p.key,
            range_end: p.range_end,
        }
    }
}

impl Client {
    /// Turns authentication on. Needs a user `root` holding the role `root`
    /// ([`ServerError::RootUserNotExist`](super::ServerError::RootUserNotExist) /
    /// [`RootRoleNotExist`](super::ServerError::RootRoleNotExist) otherwise). A client
    /// configured with a user authenticates on its next call.
    pub async fn auth_enable(&self) -> Result<Header> {
        Ok(self.call(pb::AuthEnableRequest {}).await?.header.into())
    }

    /// Turns authentication off (root only).
    pub async fn auth_disable(&self) -> Result<Header> {
        Ok(self.call(pb::AuthDisableRequest {}).await?.header.into())
    }

    /// Whether authentication is on, and the auth revision. With auth on, 3.5 treats this as an
    /// admin call: root only ([`ServerError::UserEmpty`](super::ServerError::UserEmpty) without a
    /// user, [`ServerError::PermissionDenied`](super::ServerError::PermissionDenied) for others).
    pub async fn auth_status(&self) -> Result<AuthStatus> {
        let resp = self.call(pb::AuthStatusRequest {}).await?;
        Ok(AuthStatus {
            header: resp.header.into(),
            enabled: resp.enabled,
            auth_revision: resp.auth_revision,
        })
    }

    /// Fetches a token for `user` (it does not change the token this client uses). Fails with
    /// [`ServerError::AuthFailed`](super::ServerError::AuthFailed) on a wrong password and
    /// [`ServerError::AuthNotEnabled`](super::ServerError::AuthNotEnabled) when auth is off.
    pub async fn authenticate(&self, user: &str, password: &str) -> Result<String> {
        let req = pb::AuthenticateRequest {
            name: user.to_string(),
            password: password.to_string(),
        };
        Ok(self.call(req).await?.token)
    }

    /// Adds a user with a password.
    pub async fn user_add(&self, name: &str, password: &str) -> Result<Header> {
        let req = pb::AuthUserAddRequest {
            name: name.to_string(),
            password: password.to_string(),
            options: Some(authpb::UserAddOptions { no_password: false }),
            hashed_password: String::new(),
        };
        Ok(self.call(req).await?.header.into())
    }

    /// Adds a user that cannot authenticate with a password (for TLS common-name users).
    pub async fn user_add_no_password(&self, name: &str) -> Result<Header> {
        let req = pb::AuthUserAddRequest {
            name: name.to_string(),
            password: String::new(),
            options: Some(authpb::UserAddOptions { no_password: true }),
            hashed_password: String::new(),
        };
        Ok(self.call(req).await?.header.into())
    }

    /// The roles granted to a user.
    pub async fn user_get(&self, name: &str) -> Result<Vec<String>> {
        let req = pb::AuthUserGetRequest {
            name: name.to_string(),
        };
        Ok(self.call(req).await?.roles)
    }

    /// Every user name.
    pub async fn user_list(&self) -> Result<Vec<String>> {
        Ok(self.call(pb::AuthUserListRequest {}).await?.users)
    }

    /// Deletes a user.
    pub async fn user_delete(&self, name: &str) -> Result<Header> {
        let req = pb::AuthUserDeleteRequest {
            name: name.to_string(),
        };
        Ok(self.call(req).await?.header.into())
    }

    /// Sets a user's password.
    pub async fn user_change_password(&self, name: &str, password: &str) -> Result<Header> {
        let req = pb::AuthUserChangePasswordRequest {
            name: name.to_string(),
            password: password.to_string(),
            hashed_password: String::new(),
        };
        Ok(self.call(req).await?.header.into())
    }

    /// Grants `role` to `user` (the role `root` needs no creation).
    pub async fn user_grant_role(&self, user: &str, role: &str) -> Result<Header> {
        let req = pb::AuthUserGrantRoleRequest {
            user: user.to_string(),
            role: role.to_string(),
        };
        Ok(self.call(req).await?.header.into())
    }

    /// Revokes `role` from `user`
    /// ([`ServerError::RoleNotGranted`](super::ServerError::RoleNotGranted) if it was not granted).
    pub async fn user_revoke_role(&self, user: &str, role: &str) -> Result<Header> {
        // The field is `name` here but `user` in the grant request (as upstream).
        let req = pb::AuthUserRevokeRoleRequest {
            name: user.to_string(),
            role: role.to_string(),
        };
        Ok(self.call(req).await?.header.into())
    }

    /// Adds a role with no permissions.
    pub async fn role_add(&self, name: &str) -> Result<Header> {
        let req = pb::AuthRoleAddRequest {
            name: name.to_string(),
        };
        Ok(self.call(req).await?.header.into())
    }

    /// The permissions of a role.
    pub async fn role_get(&self, name: &str) -> Result<Vec<Permission>> {
        let req = pb::AuthRoleGetRequest {
            role: name.to_string(),
        };
        let resp = self.call(req).await?;
        Ok(resp.perm.into_iter().map(Permission::from).collect())
    }

    /// Every role name.
    pub async fn role_list(&self) -> Result<Vec<String>> {
        Ok(self.call(pb::AuthRoleListRequest {}).await?.roles)
    }

    /// Deletes a role (and revokes it from every user).
    pub async fn role_delete(&self, name: &str) -> Result<Header> {
        let req = pb::AuthRoleDeleteRequest {
            role: name.to_string(),
        };
        Ok(self.call(req).await?.header.into())
    }

    /// Grants a permission to a role. A permission on the same key and range end replaces the
    /// existing one.
    pub async fn role_grant_permission(&self, role: &str, perm: Permission) -> Result<Header> {
        let req = pb::AuthRoleGrantPermissionRequest {
            name: role.to_string(),
            perm: Some(perm.to_proto()),
        };
        Ok(self.call(req).await?.header.into())
    }

    /// Revokes the permission on exactly `[key, range_end)` from a role (an empty `range_end` is
    /// the single key; use a [`Permission`]'s `key` and `range_end` to revoke it).
    /// [`ServerError::PermissionNotGranted`](super::ServerError::PermissionNotGranted) when the
    /// role has no permission with that key and range end.
    pub async fn role_revoke_permission(
        &self,
        role: &str,
        key: impl AsRef<[u8]>,
        range_end: impl AsRef<[u8]>,
    ) -> Result<Header> {
        let req = pb::AuthRoleRevokePermissionRequest {
            role: role.to_string(),
            key: Bytes::copy_from_slice(key.as_ref()),
            range_end: Bytes::copy_from_slice(range_end.as_ref()),
        };
        Ok(self.call(req).await?.header.into())
    }
}
