from guanhuai.cli import main

main()
