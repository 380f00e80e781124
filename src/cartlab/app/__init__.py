"""cartlab.app — see the project issues for the capability this package will hold."""
