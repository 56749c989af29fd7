// Private to crypto/src: private keys to and from unencrypted PKCS#8 PEM (ed25519.cpp, x509.cpp).
#pragma once

#include <climits>

#include <openssl/pem.h>

#include "kaban/crypto/error.hpp"
#include "kaban/crypto/secret_key.hpp"
#include "kaban/result.hpp"
#include "openssl_util.hpp"

namespace kaban::crypto::detail {

// Without a callback OpenSSL would prompt on the terminal for an encrypted key's passphrase.
inline int no_passphrase(char*, int, int, void*) {
  return 0;
}

/// Parses an unencrypted private key in PEM. Fails with errc::invalid_encoding.
inline Result<PkeyPtr> read_private_key_pem(ByteView pem) {
  // BIO_new_mem_buf refuses a null pointer, which an empty span may carry.
  if (pem.empty() || pem.size() > INT_MAX)
    return errc::invalid_encoding;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio)
    throw_openssl("BIO_new_mem_buf");
  PkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, &no_passphrase, nullptr));
  if (!pkey) {
    ERR_clear_error();
    return errc::invalid_encoding;
  }
  return pkey;
}

/// `pkey` as unencrypted PKCS#8 PEM, written through a BIO whose buffer is wiped when freed.
inline SecretKey write_private_key_pem(EVP_PKEY* pkey) {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio ||
      PEM_write_bio_PKCS8PrivateKey(bio.get(), pkey, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    throw_openssl("write PKCS#8 PEM");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  if (size <= 0 || data == nullptr)
    throw_openssl("read PKCS#8 PEM");
  return SecretKey::from_bytes(
      {reinterpret_cast<const std::uint8_t*>(data), static_cast<std::size_t>(size)});
}

}  // namespace kaban::crypto::detail
