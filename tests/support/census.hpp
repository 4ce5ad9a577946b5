// Resource census run around every test: a test must end with the same open file
// descriptors it started with and with no child processes (running or zombie).
//
// Library-wide resources that outlive a single pool on purpose (for example the
// fork server and its socket) are excluded through the hooks below, which the
// library's own test helpers register; a test never needs to call them itself.
#pragma once

#include <functional>
#include <set>
#include <string>
#include <sys/types.h>

namespace census {

// File descriptors currently open in this process.
std::set<int> open_fds();

// Pids of this process's children (running or zombie), read without reaping them.
std::set<pid_t> child_pids();
// The same for another process (a daemon's children, say).
std::set<pid_t> child_pids(pid_t parent);

// What a /proc symbolic link points to ("pipe:[1234]", "/usr/bin/x"); empty if unreadable.
std::string link_target(const std::string& path);

// Human-readable description of an fd, e.g. "5 -> pipe:[1234]".
std::string describe_fd(int fd);

// "pid 123 (its command line)", for messages.
std::string describe_process(pid_t pid);

// Exclude long-lived library resources from the census.
void ignore_fd_if(std::function<bool(int fd)> predicate);
void ignore_child_if(std::function<bool(pid_t pid)> predicate);

// Installs the GoogleTest listener; called from the shared test main.
void install();

}  // namespace census
