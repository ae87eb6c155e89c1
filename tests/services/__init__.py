"""Local stand-ins for cloud services (moto, Firestore emulator, Azurite), started by fixtures."""
