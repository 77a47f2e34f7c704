#include "proxykv/transport/curve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <zmq_addon.hpp>

#include "transport_log.h"

namespace proxykv::transport {
namespace {

// ZeroMQ's ZAP endpoint (RFC 27): one handler per context binds here.
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr size_t kCurveKeyBytes = 32;

std::string trim(const std::string& text) {
  size_t begin = 0;
  size_t end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  return text.substr(begin, end - begin);
}

std::string z85_encode(const uint8_t* bytes, size_t size) {
  std::string out(size * 5 / 4 + 1, '\0');
  if (zmq_z85_encode(out.data(), bytes, size) == nullptr) return {};
  out.resize(size * 5 / 4);
  return out;
}

Status write_key_file(const std::string& path, const std::string& key, mode_t mode) {
  // Create with the final mode so that a secret is never readable by others, not even briefly.
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  FILE* f = nullptr;
  {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) return not_found("cannot create " + tmp + ": " + std::strerror(errno));
    f = ::fdopen(fd, "w");
    if (f == nullptr) {
      ::close(fd);
      return internal_error("fdopen " + tmp + ": " + std::strerror(errno));
    }
  }
  const std::string line = key + "\n";
  const bool written = std::fwrite(line.data(), 1, line.size(), f) == line.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return internal_error("cannot write " + path + ": " + std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace

Status validate_curve_key(const std::string& key) {
  if (key.size() != kCurveKeyZ85Length) {
    return invalid_argument("a CURVE key is " + std::to_string(kCurveKeyZ85Length) + " Z85 characters, got " +
                            std::to_string(key.size()));
  }
  uint8_t decoded[kCurveKeyBytes];
  if (zmq_z85_decode(decoded, key.c_str()) == nullptr) return invalid_argument("not a Z85-encoded key");
  return Status::ok();
}

Result<CurveKeyPair> generate_curve_keypair() {
  if (!zmq_has("curve")) return unimplemented("libzmq was built without CURVE support");
  char public_key[kCurveKeyZ85Length + 1];
  char secret_key[kCurveKeyZ85Length + 1];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return internal_error(std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()));
  }
  return CurveKeyPair{public_key, secret_key};
}

Result<std::string> curve_public_key(const std::string& secret_key) {
  PROXYKV_RETURN_IF_ERROR(validate_curve_key(secret_key));
  char public_key[kCurveKeyZ85Length + 1];
  if (zmq_curve_public(public_key, secret_key.c_str()) != 0) {
    return internal_error(std::string("zmq_curve_public: ") + zmq_strerror(zmq_errno()));
  }
  return std::string(public_key);
}

Result<std::string> load_curve_key(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found("CURVE key file " + path + " cannot be read");
  std::ostringstream text;
  // A key file is 41 bytes; reading a little more is enough to tell a key from anything else.
  char buffer[256];
  in.read(buffer, sizeof(buffer));
  text.write(buffer, in.gcount());
  const std::string key = trim(text.str());
  if (Status s = validate_curve_key(key); !s.is_ok()) {
    return invalid_argument("CURVE key file " + path + ": " + s.message());
  }
  return key;
}

Status save_curve_keypair(const CurveKeyPair& keys, const std::string& directory, const std::string& name) {
  PROXYKV_RETURN_IF_ERROR(validate_curve_key(keys.public_key));
  PROXYKV_RETURN_IF_ERROR(validate_curve_key(keys.secret_key));
  const std::string base = directory + "/" + name;
  PROXYKV_RETURN_IF_ERROR(write_key_file(base + ".key", keys.public_key, 0644));
  return write_key_file(base + ".key_secret", keys.secret_key, 0600);
}

Result<std::unique_ptr<CurveAuthenticator>> CurveAuthenticator::start(
    zmq::context_t& context, const std::vector<std::string>& allowed_public_keys) {
  std::set<std::string> allowed;
  for (const std::string& key : allowed_public_keys) {
    if (Status s = validate_curve_key(key); !s.is_ok()) return invalid_argument("allowed client key: " + s.message());
    allowed.insert(key);
  }
  try {
    zmq::socket_t socket(context, zmq::socket_type::rep);
    socket.set(zmq::sockopt::linger, 0);
    socket.bind(kZapEndpoint);
    return std::unique_ptr<CurveAuthenticator>(new CurveAuthenticator(std::move(socket), std::move(allowed)));
  } catch (const zmq::error_t& e) {
    if (e.num() == EADDRINUSE) return failed_precondition("this ZeroMQ context already has a ZAP handler");
    return internal_error(std::string("ZAP handler: ") + e.what());
  }
}

CurveAuthenticator::CurveAuthenticator(zmq::socket_t socket, std::set<std::string> allowed)
    : socket_(std::move(socket)), allowed_(std::move(allowed)) {
  thread_ = std::thread([this] { run(); });
}

CurveAuthenticator::~CurveAuthenticator() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void CurveAuthenticator::run() {
  auto log = transport_logger();
  try {
    while (!stop_) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, std::chrono::milliseconds(50)) == 0) continue;
      zmq::multipart_t request;
      if (!request.recv(socket_, ZMQ_DONTWAIT)) continue;
      // version, request id, domain, address, routing id, mechanism, credentials...
      std::string status = "400";
      std::string text = "refused";
      std::string user;
      if (request.size() >= 7 && request[0].to_string() == "1.0" && request[5].to_string() == "CURVE" &&
          request[6].size() == kCurveKeyBytes) {
        const std::string key = z85_encode(static_cast<const uint8_t*>(request[6].data()), kCurveKeyBytes);
        if (allowed_.count(key) != 0) {
          status = "200";
          text = "OK";
          user = key;
          ++accepted_;
        } else {
          ++refused_;
          log->warn("CURVE client {} from {} refused: key not allowed", key, request[3].to_string());
        }
      } else {
        ++refused_;
      }
      zmq::multipart_t reply;
      reply.addstr("1.0");
      reply.addstr(request.size() >= 2 ? request[1].to_string() : std::string());
      reply.addstr(status);
      reply.addstr(text);
      reply.addstr(user);
      reply.addstr("");
      reply.send(socket_);
    }
  } catch (const zmq::error_t& e) {
    if (e.num() != ETERM) log->error("ZAP handler stopped: {}", e.what());
  }
}

}  // namespace proxykv::transport
