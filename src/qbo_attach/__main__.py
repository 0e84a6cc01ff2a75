from qbo_attach.cli import main

main()
