; Inno Setup 6 script: wraps the PyInstaller one-folder app (dist\rigfit) into rigfit-<version>-windows-x64-setup.exe.
; Cannot be built on the Linux development machine; build it on Windows (packaging\README.md):
;
;   python -m PyInstaller --noconfirm --distpath dist --workpath build\windows packaging\rigfit.spec
;   iscc packaging\windows\rigfit.iss
;
; The spec renders the icon to build\windows\rigfit\rigfit.ico and makes two executables: rigfit.exe
; (console: the command line, `rigfit --self-test`) and rigfitw.exe (no console: what the Start menu
; opens). Keep AppVersion equal to app/__init__.py's __version__ (tests/packaging checks it), or
; override it: iscc /DAppVersion=0.2.0 packaging\windows\rigfit.iss

#define AppName "Rigfit"
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppPublisher "Rigfit engineers"
#define AppURL "https://github.com/rigfit/rigfit"
#define SourceDir "..\..\dist\rigfit"
#define IconFile "..\..\build\windows\rigfit\rigfit.ico"

[Setup]
; A fixed AppId lets a newer installer upgrade an older installation in place.
AppId={{6B0F3C9E-4E0A-4D51-9C1B-5E7A2F3D8C41}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher={#AppPublisher}
AppPublisherURL={#AppURL}
AppSupportURL={#AppURL}
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Per-user installs need no administrator; the dialog lets a user pick all-users instead.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=rigfit-{#AppVersion}-windows-x64-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\rigfitw.exe
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesEnvironment=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add rigfit to the PATH, for the command line (rigfit detect, rigfit run ...)"; GroupDescription: "Command line:"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\rigfitw.exe"; WorkingDir: "{userdocs}"; Comment: "See how a local LLM fits across your GPUs, tune the split, and run it with llama.cpp"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\rigfitw.exe"; WorkingDir: "{userdocs}"; Tasks: desktopicon

[Registry]
; The user's PATH (HKCU) for a per-user install, the machine's (HKLM) for an all-users one: HKA picks.
Root: HKA; Subkey: "{code:EnvironmentKey}"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\rigfitw.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
function EnvironmentKey(Param: String): String;
begin
  if IsAdminInstallMode then
    Result := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment'
  else
    Result := 'Environment';
end;

function NeedsAddPath(Dir: String): Boolean;
var
  Paths: String;
  RootKey: Integer;
begin
  if IsAdminInstallMode then
    RootKey := HKEY_LOCAL_MACHINE
  else
    RootKey := HKEY_CURRENT_USER;
  if not RegQueryStringValue(RootKey, EnvironmentKey(''), 'Path', Paths) then
  begin
    Result := True;
    exit;
  end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') = 0;
end;
