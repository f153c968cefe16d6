//! Whether the calling process runs in a container, and its id.
//!
//! Docker and podman bind-mount a per-container file over `/etc/hostname`; its source path
//! names the container (`…/containers/<id>/hostname` for Docker,
//! `…/overlay-containers/<id>/userdata/hostname` for podman). `/proc/self/mountinfo` shows that
//! source, so no engine call and no cgroup layout assumption is needed to find it.

use std::path::Path;

/// The id of the container this process runs in, or `None` on the host (or in a container
/// whose engine does not mount `/etc/hostname` that way).
pub fn own_container_id() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    container_id_from_mountinfo(&mountinfo)
}

/// The container id that the `/etc/hostname` mount in `mountinfo` (the text of
/// `/proc/<pid>/mountinfo`) names.
pub fn container_id_from_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        // Fields: id, parent, major:minor, root, mount point, ...
        let mut fields = line.split(' ');
        let root = fields.nth(3)?;
        let mount_point = fields.next()?;
        if mount_point != "/etc/hostname" {
            return None;
        }
        Path::new(root)
            .components()
            .filter_map(|c| c.as_os_str().to_str())
            .find(|c| is_container_id(c))
            .map(str::to_owned)
    })
}

fn is_container_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ad1aac6d297a2f23f0ba2329007b097bac25c4dad0a8e9b04ed8a5c24680e90c";

    #[test]
    fn docker_names_the_container_in_the_hostname_mount() {
        let mountinfo = format!(
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
             98 80 254:0 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&mountinfo).as_deref(), Some(ID));
    }

    #[test]
    fn podman_names_it_under_userdata() {
        let mountinfo = format!(
            "98 80 254:0 /var/lib/containers/storage/overlay-containers/{ID}/userdata/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_id_from_mountinfo(&mountinfo).as_deref(), Some(ID));
    }

    #[test]
    fn the_host_has_no_such_mount() {
        let mountinfo = "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
                         27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
        assert_eq!(container_id_from_mountinfo(mountinfo), None);
        let short = "98 80 254:0 /etc/hostname-abc /etc/hostname rw - ext4 /dev/vda rw\n";
        assert_eq!(container_id_from_mountinfo(short), None);
    }
}
