//! UDP helpers shared by the RTP load generators (`rtpload`, `confload`): clocks, socket set-up
//! with kernel receive timestamps, batched sends, and the timestamp of a received datagram.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// CLOCK_REALTIME in nanoseconds: the clock of the kernel's SO_TIMESTAMPNS receive stamps.
pub fn realtime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

pub fn set_int_opt(socket: &UdpSocket, level: i32, name: i32, value: i32) -> Result<()> {
    // SAFETY: passes a live i32 with its size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!("setsockopt {level}/{name}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// A loopback UDP socket on `port` with 16 MB buffers and kernel receive timestamps.
pub fn bind_socket(port: u16) -> Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).with_context(|| format!("bind {port}"))?;
    // Room for bursts: 16 MB (FORCE needs root; fall back to what rmem_max allows).
    for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
        if set_int_opt(&socket, libc::SOL_SOCKET, force, 16 << 20).is_err() {
            set_int_opt(&socket, libc::SOL_SOCKET, plain, 16 << 20)?;
        }
    }
    set_int_opt(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(socket)
}

/// Sends the first `n` buffers to their `names` with `sendmmsg`.
pub fn send_batch<const N: usize>(
    fd: i32,
    bufs: &mut [[u8; N]],
    names: &mut [libc::sockaddr_in],
    iovs: &mut [libc::iovec],
    msgs: &mut [libc::mmsghdr],
    n: usize,
) {
    for i in 0..n {
        iovs[i] = libc::iovec { iov_base: bufs[i].as_mut_ptr().cast(), iov_len: N };
        let hdr = &mut msgs[i].msg_hdr;
        hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
        hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        hdr.msg_iov = &mut iovs[i];
        hdr.msg_iovlen = 1;
        hdr.msg_control = std::ptr::null_mut();
        hdr.msg_controllen = 0;
    }
    let mut done = 0usize;
    while done < n {
        // SAFETY: msgs[done..n] point at live buffers, names and iovecs set up above.
        let r = unsafe { libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
        if r <= 0 {
            // A full socket buffer: the rest of the batch is lost (counted as sent, so as loss).
            break;
        }
        done += r as usize;
    }
}

/// The kernel's receive timestamp (SCM_TIMESTAMPNS) of a datagram read with `recvmmsg`.
pub fn kernel_timestamp(hdr: &libc::msghdr) -> Option<u64> {
    // SAFETY: the kernel filled msg_control (msg_controllen bytes) with cmsgs; the CMSG macros
    // walk inside that buffer.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}
