"""Guarding data and weights: encrypted artifacts, PII scrubbing, differentially private and federated training."""
from .config import EncryptConfig, PrivacyConfig, ScrubConfig
from .keys import DecryptionError, Secret, secret_from_options, write_key_file
from .sealed import CryptReport, decrypt_artifact, encrypt_artifact, is_encrypted, open_encrypted

__all__ = ["CryptReport", "DecryptionError", "EncryptConfig", "PrivacyConfig", "ScrubConfig", "Secret",
           "decrypt_artifact", "encrypt_artifact", "is_encrypted", "open_encrypted", "secret_from_options",
           "write_key_file"]
