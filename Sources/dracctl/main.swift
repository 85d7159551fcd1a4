// dracctl: thin entry point; the commands live in DRACAdmin.
import DRACAdmin

DracCtl.runMain()
