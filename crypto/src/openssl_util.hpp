// Private to crypto/src: owning handles for OpenSSL objects and the error bridge.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/x509.h>

namespace kaban::crypto::detail {

template <auto Fn>
struct Deleter {
  template <class T>
  void operator()(T* p) const noexcept {
    Fn(p);
  }
};

using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, Deleter<&EVP_CIPHER_CTX_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<&EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<&EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<&EVP_MD_CTX_free>>;
using KdfPtr = std::unique_ptr<EVP_KDF, Deleter<&EVP_KDF_free>>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, Deleter<&EVP_KDF_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<&X509_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, Deleter<&X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<&X509_STORE_CTX_free>>;

/// The oldest queued OpenSSL error as text, and the queue cleared.
inline std::string take_openssl_error() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  return buf;
}

/// For OpenSSL calls that fail only when something is deeply wrong (allocation, a missing
/// provider): a broken invariant, so it throws.
[[noreturn]] inline void throw_openssl(const char* what) {
  throw std::runtime_error(std::string("OpenSSL: ") + what + ": " + take_openssl_error());
}

}  // namespace kaban::crypto::detail

// Appended for sha256.cpp, aead.cpp, ed25519.cpp and x509.cpp: fetched algorithms and BIOs.
#include <openssl/bio.h>

namespace kaban::crypto::detail {

using MdPtr = std::unique_ptr<EVP_MD, Deleter<&EVP_MD_free>>;
using CipherPtr = std::unique_ptr<EVP_CIPHER, Deleter<&EVP_CIPHER_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<&BIO_free_all>>;

}  // namespace kaban::crypto::detail
