package memwatch

import (
	"encoding/binary"
	"os"
	"syscall"
)

// readFile reads path into buf and returns the filled part. A file longer
// than buf is cut at len(buf). It uses raw system calls because os.Open
// allocates a File and registers a cleanup for it, so the only allocation
// left is the path's C string.
func readFile(path string, buf []byte) ([]byte, error) {
	fd, err := open(path, syscall.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)

	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

// countFDs counts the entries of /proc/self/fd, using buf for the directory
// records. The descriptor that reads the directory is not counted.
func countFDs(buf []byte) (int, error) {
	fd, err := open(procFDPath, syscall.O_RDONLY|syscall.O_DIRECTORY)
	if err != nil {
		return 0, err
	}
	defer syscall.Close(fd)

	count := 0
	for {
		n, err := syscall.Getdents(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "getdents", Path: procFDPath, Err: err}
		}
		if n <= 0 {
			break
		}
		count += countDirents(buf[:n])
	}
	return count - 1, nil
}

// countDirents counts the linux_dirent64 records in buf other than "." and
// "..". A record is d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1) and
// the NUL-terminated name, padded to 8 bytes, so a name has at least 5 bytes.
func countDirents(buf []byte) int {
	count := 0
	for off := 0; off+19 < len(buf); {
		reclen := int(binary.NativeEndian.Uint16(buf[off+16:]))
		if reclen < 24 || off+reclen > len(buf) {
			break
		}
		name := buf[off+19 : off+reclen]
		dot := name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))
		if !dot {
			count++
		}
		off += reclen
	}
	return count
}

func open(path string, mode int) (int, error) {
	for {
		fd, err := syscall.Open(path, mode|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}
